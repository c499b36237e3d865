"""One host's program: its table functions' flows, checked against the pipelines, assembled into
bridges with their ports; per network in steps, reusing an earlier compile's pieces when given."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import replace

from ..allocation import Allocation
from ..flow import Flow
from ..graph import PATCH_OFPORT, TopologyGraph
from ..model import Network, Topology
from ..pipeline import Pipelines
from ..program import COOKIE_STATIC, HostProgram, PortConfig
from ..routers import Router
from .antispoof import AntiSpoofTables
from .integration import IntTables
from .pieces import NetworkPiece, PieceMemo, assemble, check, finish, keyed, sorted_piece
from .routing import RoutingTables
from .tunnel import TunTables


class HostCompiler(TunTables, IntTables, AntiSpoofTables, RoutingTables):
    """Compiles one host. Table functions come in three kinds: host-wide ones (`tun_classify`,
    `tun_from_int`, `tun_learn`, `tun_route_ttl`), per-network ones, which take the network and
    return only its flows (tunnel.py, integration.py, antispoof.py), and per-router ones (routing.py)."""

    def __init__(self, graph: TopologyGraph, host: str, memo: PieceMemo | None = None,
                 pipelines: Pipelines | None = None):
        super().__init__(graph, host, pipelines)
        self.memo = memo


    # -- assembly ----------------------------------------------------------------------------------
    def network_piece_steps(self, net: Network, every: int = 1000) -> Generator[None, None, NetworkPiece]:
        """All of one network's flows on this host, checked against the pipelines, built in steps:
        yields after about `every` flows' worth of work and returns the piece (`finish` runs it
        through). A caller that must stay responsive (the live controller compiling ahead while
        switches connect) does other work at each yield; the result is the same."""
        tun: list[Flow] = []
        for gen in (self.tun_key_to_vlan(net), self.tun_unicast(net), self.tun_arp_responder(net),
                    self.tun_nd_responder(net), self.tun_flood(net)):
            for f in gen:
                tun.append(f)
                if len(tun) % every == 0:
                    yield
        int_ = (*self.int_classify(net), *self.int_antispoof(net), *self.int_from_vm(net), *self.int_to_vm(net))
        group = self.tun_group(net)
        for i in range(0, len(tun), every):
            check(self.tun, tuple(tun[i:i + every]), (group,) if group else ())
            yield
        check(self.int, int_)
        return sorted_piece(tun, int_, group)

    def piece_steps(self, net: Network, every: int = 1000) -> Generator[None, None, NetworkPiece]:
        """The network's piece from the memo if it has one for `piece_key(net)`, else built (in
        steps, see network_piece_steps) and put there."""
        if self.memo is None:
            return (yield from self.network_piece_steps(net, every))
        key = self.piece_key(net)
        found = self.memo.lookup(self.host.name, key)
        if found is None:
            found = self.memo.store(self.host.name, key, (yield from self.network_piece_steps(net, every)))
        return found

    def router_piece(self, router: Router) -> NetworkPiece:
        """A router's flows on this host, checked, as a piece (reused from the memo when its
        inputs, `router_key`, are unchanged)."""
        key = self.router_key(router)
        if self.memo is not None:
            found = self.memo.lookup(self.host.name, key)
            if found is not None:
                return found
        tun, int_ = self.router_flows(router)
        check(self.tun, tuple(tun))
        check(self.int, tuple(int_))
        piece = sorted_piece(tun, int_)
        return self.memo.store(self.host.name, key, piece) if self.memo is not None else piece

    def pieces(self) -> list[NetworkPiece]:
        """One piece per network with a port here, then one per router this host touches."""
        return ([finish(self.piece_steps(net)) for net in self.networks]
                + [self.router_piece(r) for r in self.graph.routers_on(self.host.name)])

    def compile(self, datapath_type: str | None = None) -> HostProgram:
        pieces = self.pieces()
        tun_host = (*self.tun_classify(), *self.tun_from_int(), *self.tun_learn(), *self.tun.miss_flows(COOKIE_STATIC))
        int_host = (*self.int_route_ttl(), *self.int.miss_flows(COOKIE_STATIC))
        groups = tuple(sorted((p.group for p in pieces if p.group is not None), key=lambda g: g.group_id))
        check(self.tun, tun_host, groups)
        check(self.int, int_host)
        dpid_int, dpid_tun = self.graph.datapath_ids(self.host.name)
        dp_type = datapath_type or self.host.datapath_type

        tun_ports = [PortConfig("patch-int", PATCH_OFPORT, "patch", (("peer", "patch-tun"),), f"patch to {self.host.bridge_int}")]
        for t in self.tunnels:
            opts = (("key", "flow"), ("local_ip", self.host.vtep), ("remote_ip", t.remote_ip))
            tun_ports.append(PortConfig(t.name, t.ofport, t.type, opts, f"{t.type} tunnel to {t.remote} {t.remote_ip}"))
        int_ports = [PortConfig("patch-tun", PATCH_OFPORT, "patch", (("peer", "patch-int"),), f"patch to {self.host.bridge_tun}")]
        for port in self.ports:
            comment = f"VM port {port.name} ({port.network}, {port.mac})"
            int_ports.append(PortConfig(port.iface, self.vm_ofports[port.name], "", (), comment))
        int_ports.sort(key=lambda p: p.ofport)

        int_wide, tun_wide = keyed(int_host), keyed(tun_host)
        if self.memo is not None:  # host-wide flows change rarely: keep the old objects when equal
            int_wide = self.memo.same(self.host.name, "int", int_wide)
            tun_wide = self.memo.same(self.host.name, "tun", tun_wide)
        int_parts = (int_wide, *((p.int, p.int_keys) for p in pieces))
        tun_parts = (tun_wide, *((p.tun, p.tun_keys) for p in pieces))
        br_int = assemble(self.host.bridge_int, "int", dp_type, dpid_int, int_ports, int_parts, ())
        br_tun = assemble(self.host.bridge_tun, "tun", dp_type, dpid_tun, tun_ports, tun_parts, groups)
        br_tun = replace(br_tun, learn_limit=(self.learn_into, self.topo.max_learned))
        allocation = Allocation(dict(self.vlans), dict(self.vm_ofports), {t.name: t.ofport for t in self.tunnels})
        return HostProgram(self.host.name, self.host.vtep, (br_int, br_tun), dict(self.vlans), allocation)



def compile_host(topo: Topology, host: str, datapath_type: str | None = None, graph: TopologyGraph | None = None,
                 memo: PieceMemo | None = None, pipelines: Pipelines | None = None,
                 allocation: Allocation | None = None) -> HostProgram:
    """The program of one host. Pass a prebuilt `graph` when compiling many hosts of one topology,
    a `memo` to reuse the network pieces of an earlier compile (the result is the same), and
    `pipelines` to compile against other declarations than pipelines/ (tests renumber tables).
    `allocation`: the numbers the host's switch carries (an earlier program's `allocation`), kept
    for every item that still exists; without a `graph` only (a graph carries its own memory)."""
    if host not in topo.hosts:
        raise KeyError(host)
    if graph is not None and graph.focus not in (None, host):
        raise ValueError(f"graph focused on {graph.focus}, not {host}")
    if graph is not None and allocation is not None:
        raise ValueError("give the allocation to the graph (TopologyGraph(memory=...)), not beside it")
    graph = graph or TopologyGraph(topo, focus=host, memory={host: allocation} if allocation else None)
    return HostCompiler(graph, host, memo, pipelines).compile(datapath_type)


def compile_all(topo: Topology, datapath_type: str | None = None, memo: PieceMemo | None = None,
                pipelines: Pipelines | None = None, memory: Mapping[str, Allocation] | None = None) -> dict[str, HostProgram]:
    """Every host's program; `memory`: per host, the allocation its switch carries."""
    graph = TopologyGraph(topo, memory=memory)
    return {h: compile_host(topo, h, datapath_type, graph, memo, pipelines) for h in sorted(topo.hosts)}
