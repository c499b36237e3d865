"""Routing between the networks of one router: the gateway answered in the switch, IPv4 routed in
br-int, and what br-tun needs so routed frames reach their host.

Distributed (the default, like OVN's logical router and Neutron DVR): every host with a port on one
of the router's networks routes its own VMs' traffic, so a routed frame takes one tunnel hop, with
the destination network's key. Centralized (seed-004 style, one gateway VTEP): frames to the router's
MAC go to `router.host` over the source network's key, are routed there and leave with the
destination network's key: two legs.

The router's MAC on a network is a source on every routing host, so learn() must never learn it:
br-tun's learn table delivers frames from it without learning (Neutron DVR uses per-host MACs and a
"do not learn" table for the same reason; one MAC per network keeps gateway ARP answers the same on
every host). Routed destinations are the topology's ports, so where each lives is known: their
MACs are pre-installed in br-tun (as l2pop does) for networks the host routes into, and addresses no
port has are dropped, never flooded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import flow as F
from ..fields import (
    ARP_REQUEST,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    ipv4,
    mac,
)
from ..flow import Flow
from ..graph import PATCH_OFPORT
from ..model import Network
from ..program import COOKIE_STATIC
from ..routers import Router
from .facts import HostFacts, vid
from .pieces import make
from .tunnel import ARP_REPLY_HEAD, ARP_REPLY_MID, BACK, PRIO_L2POP

PRIO_TTL_DROP = 10  # route: TTL 0/1 dropped before any route can match
PRIO_ROUTE_FROM_TUN = 3  # route, centralized: a frame that came from br-tun goes back out there
PRIO_ROUTE = 2
PRIO_TO_GATEWAY = 5  # from_vm: above local switching (3) and broadcast (2)
PRIO_TO_ROUTER = 4
PRIO_CLASSIFY_ROUTED = 2  # br-int classify, centralized router host: above "from br-tun" (1)
PRIO_NO_LEARN = 3  # br-tun learn: above learn() (1, 2)
PRIO_ROUTED_ONLY = 2  # br-tun learn: a network routed here without ports (its VLAN has no learn())
GATEWAY_REPLY_TTL = 64


class RoutingTables(HostFacts):
    """The flows one host needs for the routers it touches."""

    def routes_here(self, router: Router) -> bool:
        return self.host.name in self.graph.routing_hosts(router.name)

    def int_route_ttl(self) -> Iterable[Flow]:
        """Host-wide: an expiring TTL is dropped by match (n_packets counts it), so dec_ttl never
        meets TTL 0 or 1 and OVS never has a reason to send a packet-in."""
        if any(self.routes_here(r) for r in self.graph.routers_on(self.host.name)):
            for ttl in (0, 1):
                yield make(self.int["route"], PRIO_TTL_DROP, {"dl_type": ETH_TYPE_IP, "nw_ttl": ttl}, [])

    def router_flows(self, router: Router) -> tuple[list[Flow], list[Flow]]:
        """(br-tun flows, br-int flows) of one router on this host."""
        tun: list[Flow] = []
        int_: list[Flow] = []
        nets = [self.topo.networks[n] for n in router.networks if n in self.vlans]
        for net in nets:
            int_ += self.int_gateway(router, net)
            tun += self.tun_router_mac(router, net)
        if self.routes_here(router):
            for src in nets:
                for dst in nets:
                    if dst is not src:
                        int_ += self.int_routes(router, src, dst)
            for dst in nets:
                tun += self.tun_routed_destinations(dst)
                tun += self.tun_routed_only_key(dst)
        return tun, int_

    # -- br-int ------------------------------------------------------------------------------------
    def int_gateway(self, router: Router, net: Network) -> Iterable[Flow]:
        """The gateway's ARP and ping answered here for local VMs; their IPv4 to the router's MAC
        routed here (distributed) or, on the centralized router's host, also when it comes from
        br-tun."""
        vlan, rmac, gw = self.vlans[net.name], mac(router.mac(net.name)), ipv4(net.gateway or "")
        if self.local_ports.get(net.name):
            gateway = self.int["gateway"]
            yield make(self.int["from_vm"], PRIO_TO_GATEWAY, {"dl_vlan": vlan, "dl_type": ETH_TYPE_ARP, "arp_tpa": gw},
                       [gateway.goto()])
            yield make(self.int["from_vm"], PRIO_TO_GATEWAY,
                       {"dl_vlan": vlan, "dl_dst": rmac, "dl_type": ETH_TYPE_IP, "nw_dst": gw}, [gateway.goto()])
            yield make(gateway, 1, {"dl_vlan": vlan, "dl_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST, "arp_tpa": gw}, [
                *ARP_REPLY_HEAD, F.SetField("eth_src", rmac), *ARP_REPLY_MID,
                F.SetField("arp_sha", rmac), F.SetField("arp_spa", gw), F.PopVlan(), BACK])
            yield make(gateway, 1, {"dl_vlan": vlan, "dl_type": ETH_TYPE_IP, "nw_proto": IPPROTO_ICMP,
                                    "icmp_type": ICMP_ECHO_REQUEST, "nw_dst": gw}, [
                F.Move("dl_src", "dl_dst"), F.SetField("eth_src", rmac), F.Move("nw_src", "nw_dst"),
                F.SetField("ip_src", gw), F.SetField("icmp_type", ICMP_ECHO_REPLY),
                F.SetField("nw_ttl", GATEWAY_REPLY_TTL), F.PopVlan(), BACK])
            if self.routes_here(router):
                yield make(self.int["from_vm"], PRIO_TO_ROUTER, {"dl_vlan": vlan, "dl_dst": rmac, "dl_type": ETH_TYPE_IP},
                           [self.int["route"].goto()])
        if router.mode == "centralized" and self.routes_here(router) and self.graph.remote_senders(self.host.name, net.name):
            yield make(self.int["classify"], PRIO_CLASSIFY_ROUTED, {"in_port": PATCH_OFPORT, "dl_vlan": vlan, "dl_dst": rmac},
                       [self.int["route"].goto()])

    def int_routes(self, router: Router, src: Network, dst: Network) -> Iterable[Flow]:
        """One route per destination port with an address: TTL - 1, MACs rewritten, VLAN moved to
        the destination network's; delivered here or sent to br-tun. Distributed routing takes
        frames from local VMs only; the centralized router's host also from br-tun (those go
        back out where they came from)."""
        centralized = router.mode == "centralized"
        if not centralized and not self.local_ports.get(src.name):
            return
        src_vlan, rmac = self.vlans[src.name], mac(router.mac(dst.name))
        set_vlan = F.SetField("vlan_vid", vid(self.vlans[dst.name]))
        to_vm, route = self.int["to_vm"].goto(), self.int["route"]
        for port in self.graph.ports_of(dst.name):
            if port.ip is None:
                continue
            match: dict[str, F.MatchValue] = {"dl_vlan": src_vlan, "dl_type": ETH_TYPE_IP, "nw_dst": ipv4(port.ip)}
            head = (F.DecTtl(), F.SetField("eth_src", rmac), F.SetField("eth_dst", mac(port.mac)), set_vlan)
            if port.host == self.host.name:
                yield make(route, PRIO_ROUTE, match, [*head, to_vm])
                continue
            yield make(route, PRIO_ROUTE, match, [*head, F.Output(PATCH_OFPORT)])
            if centralized:
                yield make(route, PRIO_ROUTE_FROM_TUN, {**match, "in_port": PATCH_OFPORT}, [*head, BACK])

    # -- br-tun ------------------------------------------------------------------------------------
    def tun_router_mac(self, router: Router, net: Network) -> Iterable[Flow]:
        """Never learn the router's MAC; on hosts that do not route a centralized router, frames to
        it go to the router's host."""
        vlan, rmac = self.vlans[net.name], mac(router.mac(net.name))
        if self.local_ports.get(net.name) and self.graph.remote_senders(self.host.name, net.name):
            yield make(self.tun["learn"], PRIO_NO_LEARN, {"dl_vlan": vlan, "dl_src": rmac}, [F.Output(PATCH_OFPORT)])
        if router.mode == "centralized" and not self.routes_here(router) and self.local_ports.get(net.name):
            assert router.host is not None
            tunnel = self.tunnel_by_key[(router.host, net.tunnel)]
            yield Flow.make(self.tun["unicast"].id, PRIO_L2POP, {"dl_vlan": vlan, "dl_dst": rmac},
                            (F.PopVlan(), F.SetField("tun_id", net.vni), F.Output(tunnel.ofport)), COOKIE_STATIC)

    def tun_routed_destinations(self, net: Network) -> Iterable[Flow]:
        """Where a network's remote ports live, for routed frames into it (l2pop networks this host
        is on have these already)."""
        if net.mode == "l2pop" and self.local_ports.get(net.name):
            return
        vlan, pop, set_key = self.vlans[net.name], F.PopVlan(), F.SetField("tun_id", net.vni)
        actions: dict[str, tuple[F.Action, ...]] = {}
        for port in self.graph.ports_of(net.name):
            if port.host == self.host.name or port.ip is None:
                continue
            acts = actions.get(port.host)
            if acts is None:
                acts = actions[port.host] = (pop, set_key, F.Output(self.tunnel_by_key[(port.host, net.tunnel)].ofport))
            yield Flow(self.tun["unicast"].id, PRIO_L2POP, (("dl_vlan", vlan), ("dl_dst", mac(port.mac))), acts, COOKIE_STATIC)

    def tun_routed_only_key(self, net: Network) -> Iterable[Flow]:
        """A centralized router's host may have no port on a network it routes: it still takes that
        network's tunnel key (its network piece, which would, does not exist) and hands the frames
        to br-int without learning (routed destinations are pre-installed)."""
        if not self.local_ports.get(net.name) and self.graph.remote_senders(self.host.name, net.name):
            vlan = self.vlans[net.name]
            yield make(self.tun.tunnel_table(net.tunnel), 1, {"tun_id": net.vni},
                       [F.PushVlan(), F.SetField("vlan_vid", vid(vlan)), self.tun["learn"].goto()])
            yield make(self.tun["learn"], PRIO_ROUTED_ONLY, {"dl_vlan": vlan}, [F.Output(PATCH_OFPORT)])

    def router_key(self, router: Router) -> tuple[Any, ...]:
        """Everything router_flows(router) reads, so a memo can reuse its piece."""
        nets = tuple(n for n in router.networks if n in self.vlans)
        return ("router", router, self.host.name in self.graph.routing_hosts(router.name),
                tuple((n, self.vlans[n], self.topo.networks[n], self.graph.ports_of(n),
                       tuple(self.local_ports.get(n, ())), bool(self.graph.remote_senders(self.host.name, n)))
                      for n in nets),
                tuple((t.remote, t.type, t.ofport) for t in self.tunnels))
