"""Flows a router adds to a host: the formula, and its check against the compiler.

Per host h and router r, with N = r's networks h has a local VLAN for (a port of its own there, or
routed into), L(n) = h has a port on n, S(n) = some other host sends n's frames to h (a port on n or a
routing host: graph.remote_senders), R = h routes for r (distributed: h has a port on one of r's
networks; centralized: h is r's host), C = r is centralized, and for a network n: P(n) = its ports
with an IP, P_here(n) / P_away(n) = those on h / elsewhere:

  br-int, per n in N with L(n):   4            gateway ARP and ping: 2 in from_vm, 2 answers in gateway
                                  + R          from_vm: IPv4 to the router MAC -> route
  br-int, per n in N:             + C*R*S(n)   classify: from br-tun to the router MAC -> route
  br-int, if R, per (src, dst) in N x N, src != dst, and (C or L(src)):
                                  P_here(dst) + (1 + C) * P_away(dst)    one route per address
                                               (+ the centralized router's "came from br-tun" twin)
  br-tun, per n in N with L(n):   S(n)         learn table: never learn the router MAC
                                  + C*(1-R)    unicast: the router MAC -> the router's host
  br-tun, if R, per dst in N:     P_away(dst) unless dst is l2pop with L(dst)   routed destinations
                                  + 2 * (1-L(dst)) * S(dst)                       its key -> VLAN
  per host, once, if R for any router:   2   route: TTL 0 and TTL 1 dropped

  br-tun, per tunnel (remote host, type) that only routing needs:  1   classify: in_port -> its table

The router terms above are what compiler/routing.py emits (router_flows + int_route_ttl); the bench
checks them exactly against it, host by host. Beside them, routers change a host's *other* flows a
little, and those side effects are only estimated here (the bench reports how often the estimate
is exact): one br-tun classify flow per tunnel only routing needs (`new_tunnels`), and a network
with ports on h but no other host gains remote senders through the router, hence its key -> VLAN
flow, br-int's acceptance from br-tun and its unicast to br-tun (`newly_remote`, 3 per network; a
host that had no remote network at all also gains learn() in learn mode, and l2pop networks differ
by one or two more). For the common case (distributed, k networks of the router all on h and on
other hosts, learn mode) the router adds 6k + 2 + (sum over ordered pairs of P(dst)) + the remote
addresses of the k networks.
"""

from __future__ import annotations

from typing import Any


def router_terms(graph: Any, topo: Any, host: str, router: Any, vlans: dict[str, int]) -> dict[str, int]:
    """The formula's terms for one router on one host (see the module docstring)."""
    local = {n for n in router.networks if any(p.host == host for p in graph.ports_of(n))}
    nets = [n for n in router.networks if n in vlans]
    routes_here = host in graph.routing_hosts(router.name)
    c = router.mode == "centralized"
    senders = {n: bool(graph.remote_senders(host, n)) for n in nets}
    with_ip = {n: [p for p in graph.ports_of(n) if p.ip is not None] for n in nets}
    here = {n: sum(p.host == host for p in with_ip[n]) for n in nets}
    away = {n: len(with_ip[n]) - here[n] for n in nets}
    t = {"gateway": 0, "to_route": 0, "classify": 0, "routes": 0, "no_learn": 0, "to_router_host": 0,
         "destinations": 0, "routed_only_key": 0}
    for n in nets:
        if n in local:
            t["gateway"] += 4
            t["to_route"] += int(routes_here)
            t["no_learn"] += int(senders[n])
            t["to_router_host"] += int(c and not routes_here)
        t["classify"] += int(c and routes_here and senders[n])
    if routes_here:
        for src in nets:
            for dst in nets:
                if dst != src and (c or src in local):
                    t["routes"] += here[dst] + (1 + int(c)) * away[dst]
        for dst in nets:
            if not (topo.networks[dst].mode == "l2pop" and dst in local):
                t["destinations"] += away[dst]
            t["routed_only_key"] += 2 * int(dst not in local and senders[dst])
    return t


def formula(graph: Any, topo: Any, host: str, vlans: dict[str, int], graph_without: Any) -> dict[str, int]:
    """Flows the routers add to `host`, by term, summed over its routers."""
    total: dict[str, int] = {}
    routes_anywhere = False
    for router in graph.routers_on(host):
        routes_anywhere |= host in graph.routing_hosts(router.name)
        for k, v in router_terms(graph, topo, host, router, vlans).items():
            total[k] = total.get(k, 0) + v
    total["ttl_drop"] = 2 * int(routes_anywhere)
    # tunnels (remote host, type) only routing needs: br-tun classify takes each one's frames
    total["new_tunnels"] = len(set(graph.peers(host)) - set(graph_without.peers(host)))
    # networks with a port here that only the routers give remote senders
    total["newly_remote"] = sum(3 + int(n.mode == "l2pop") for n in graph_without.networks_on(host)
                                if graph.remote_senders(host, n.name) and not graph_without.remote_senders(host, n.name))
    return total


SIDE_EFFECTS = ("new_tunnels", "newly_remote")


def router_flow_count(graph: Any, host: str) -> int:
    """What compiler/routing.py emits for `host`: every router's flows and the TTL drops."""
    from ovsflow.compiler.host import HostCompiler

    hc = HostCompiler(graph, host)
    return (sum(len(t) + len(i) for t, i in (hc.router_flows(r) for r in graph.routers_on(host)))
            + len(list(hc.int_route_ttl())))


def check_topology(data: dict, source: str = "synthetic") -> list[dict]:
    """Per host: the router terms beside the routing compiler's flows (exact), and the whole
    host's flows with routers - without them beside router terms + side effects (an estimate)."""
    from ovsflow.compiler import compile_host
    from ovsflow.graph import TopologyGraph
    from ovsflow.model import load_topology_data

    with_r = load_topology_data(data, source)
    without = load_topology_data({k: v for k, v in data.items() if k != "routers"}, source)
    g, g0 = TopologyGraph(with_r), TopologyGraph(without)
    out = []
    for host in sorted(with_r.hosts):
        a, b = compile_host(with_r, host, graph=g), compile_host(without, host, graph=g0)
        delta = sum(len(x.flows) for x in a.bridges) - sum(len(x.flows) for x in b.bridges)
        terms = formula(g, with_r, host, dict(a.local_vlans), g0)
        router_terms_sum = sum(v for k, v in terms.items() if k not in SIDE_EFFECTS)
        out.append({"host": host, "routing_compiler": router_flow_count(g, host), "formula": router_terms_sum,
                    "host_delta": delta, "estimate": sum(terms.values()), "terms": terms,
                    "routers": len(g.routers_on(host))})
    return out
