"""The whole proof: every host checked (checks.py), then what only the fabric shows (loops through
tunnels), then each violation's counterexample replayed concretely in the evaluator for its trace."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import cast

import networkx as nx

from ..compiler import compile_host
from ..evaluator import EvaluationError, Fabric
from ..fields import ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, FIELDS, IPPROTO_ICMP, IPPROTO_UDP
from ..graph import TopologyGraph
from ..model import Topology
from ..packet import Frame
from ..pipeline import Pipelines
from ..program import HostProgram
from .checks import HostCheck, HostReport, Violation


@dataclass
class VerifyResult:
    violations: list[Violation] = field(default_factory=list)
    hosts: int = 0
    flows: int = 0
    classes: int = 0
    exits: int = 0
    seconds: float = 0.0
    per_host: list[float] = field(default_factory=list)  # seconds per host (compile excluded)
    compile_seconds: float = 0.0
    traces: list[str] = field(default_factory=list)  # one per violation (replayed), same order

    @property
    def ok(self) -> bool:
        return not self.violations


def verify_host(topo: Topology, graph: TopologyGraph, program: HostProgram,
                pipelines: Pipelines | None = None) -> tuple[HostReport, set[tuple[int, str, int]]]:
    check = HostCheck(topo, graph, program, pipelines or Pipelines.load())
    return check.run(), check.relays


def verify(topo: Topology, programs: Iterable[HostProgram] | None = None, replay: bool = True,
           graph: TopologyGraph | None = None, workers: int = 1) -> VerifyResult:
    """Verify the given programs (default: the compiler's, compiled one host at a time and not
    kept, so memory stays that of one host's program). `workers` > 1: the compiler's programs are
    compiled and verified in that many processes (forked: the topology and its graph are shared,
    not sent), hosts handed out one at a time and their reports gathered in host order, so the
    result is the same as with one."""
    start = time.perf_counter()
    graph = graph or TopologyGraph(topo)
    pipelines = Pipelines.load()
    res = VerifyResult()
    given = {p.host: p for p in programs} if programs is not None else None
    relays: dict[str, set[tuple[int, str, int]]] = {}
    parallel = given is None and workers > 1 and len(topo.hosts) > 1
    if parallel:
        _parallel(topo, graph, res, relays, workers)
    for h in [] if parallel else sorted(topo.hosts):
        t0 = time.perf_counter()
        prog = given.get(h) if given is not None else compile_host(topo, h, graph=graph)
        t1 = time.perf_counter()
        res.compile_seconds += t1 - t0
        if prog is None:
            res.violations.append(Violation("limit", h, "no program for this host"))
            continue
        report, relays[h] = verify_host(topo, graph, prog, pipelines)
        res.per_host.append(time.perf_counter() - t1)
        res.hosts += 1
        res.flows += report.flows
        res.classes += report.classes
        res.exits += report.exits
        res.violations += report.violations
    res.violations += tunnel_loops(relays)
    res.seconds = time.perf_counter() - start
    if replay and res.violations:
        progs = list(given.values()) if given is not None else [compile_host(topo, h, graph=graph) for h in sorted(topo.hosts)]
        fabric = Fabric(progs)
        res.traces = [replay_violation(fabric, v) for v in res.violations]
    return res


_WORKER: dict[str, object] = {}


def _init_worker(topo: Topology, graph: TopologyGraph) -> None:
    _WORKER.update(topo=topo, graph=graph, pipelines=Pipelines.load())


def _one_host(h: str) -> tuple[HostReport, set[tuple[int, str, int]], float, float]:
    topo, graph = cast(Topology, _WORKER["topo"]), cast(TopologyGraph, _WORKER["graph"])
    t0 = time.perf_counter()
    prog = compile_host(topo, h, graph=graph)
    t1 = time.perf_counter()
    report, relays = verify_host(topo, graph, prog, cast(Pipelines, _WORKER["pipelines"]))
    return report, relays, t1 - t0, time.perf_counter() - t1


def _parallel(topo: Topology, graph: TopologyGraph, res: VerifyResult,
              relays: dict[str, set[tuple[int, str, int]]], workers: int) -> None:
    hosts = sorted(topo.hosts)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(workers, len(hosts)), mp_context=ctx,
                             initializer=_init_worker, initargs=(topo, graph)) as pool:
        for h, (report, rel, t_comp, t_ver) in zip(hosts, pool.map(_one_host, hosts), strict=True):
            relays[h] = rel
            res.compile_seconds += t_comp
            res.per_host.append(t_ver)
            res.hosts += 1
            res.flows += report.flows
            res.classes += report.classes
            res.exits += report.exits
            res.violations += report.violations


def tunnel_loops(relays: dict[str, set[tuple[int, str, int]]]) -> list[Violation]:
    """A frame arriving on a tunnel that a host sends on into another tunnel is a relay; a cycle
    of relays (host, key) -> (host, key) is a forwarding loop across hosts."""
    g: nx.DiGraph = nx.DiGraph()
    for host, edges in relays.items():
        for key_in, remote, key_out in edges:
            g.add_edge((host, key_in), (remote, key_out))
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return []
    hops = " -> ".join(f"{h} key {k:#x}" for (h, k), _ in cycle)
    return [Violation("loop", cycle[0][0][0], f"forwarding loop across tunnels: {hops}")]


def frame_of(values: dict[str, int], tun_id: int | None = None) -> Frame:
    """A concrete frame carrying `values` (canonical field names), the rest filled in plausibly."""
    v = dict(values)
    eth_type = v.get("dl_type", ETH_TYPE_IP)
    tci = v.get("vlan_tci", 0)
    names: tuple[str, ...] = ()
    kw: dict[str, object] = {"eth_src": v.get("dl_src", 0x020000000001), "eth_dst": v.get("dl_dst", 0x020000000002),
                             "ethertype": eth_type, "vlan": (tci & 0xFFF) if tci & 0x1000 else None}
    if eth_type == ETH_TYPE_IP:
        v.setdefault("nw_proto", IPPROTO_UDP)
        v.setdefault("nw_ttl", 64)
        v.setdefault("nw_src", 0xC6336401)
        v.setdefault("nw_dst", 0xC6336402)
        if v["nw_proto"] == IPPROTO_ICMP:
            v.setdefault("icmp_type", 8)
            v.setdefault("icmp_code", 0)
        names = ("nw_proto", "nw_ttl", "nw_src", "nw_dst", "icmp_type", "icmp_code")
    elif eth_type == ETH_TYPE_ARP:
        v.setdefault("arp_op", 1)
        v.setdefault("arp_spa", 0xC6336401)
        v.setdefault("arp_tpa", 0xC6336402)
        v.setdefault("arp_sha", kw["eth_src"])  # type: ignore[arg-type]
        v.setdefault("arp_tha", 0)
        names = ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")
    elif eth_type == ETH_TYPE_IPV6:
        v.setdefault("nw_proto", 17)
        v.setdefault("nw_ttl", 64)
        names = ("nw_proto", "nw_ttl", "ipv6_src", "ipv6_dst", "icmpv6_type", "nd_target", "nd_sll", "nd_tll")
        v.setdefault("ipv6_src", 0xFE80 << 112 | 1)
        v.setdefault("ipv6_dst", 0xFE80 << 112 | 2)
    for n in names:
        attr = FIELDS[n].frame
        if n in v and attr:
            kw[attr] = v[n]
    return replace(Frame(**kw), tun_id=tun_id or 0)  # type: ignore[arg-type]


def replay_violation(fabric: Fabric, v: Violation) -> str:
    """The counterexample through the evaluator: its trace as text (or why there is none)."""
    if v.entry is None or v.frame is None:
        return ""
    host = fabric.hosts.get(v.host)
    if host is None:
        return ""
    bridge, ofport = v.entry
    frame = frame_of(v.frame, v.tun_id)
    try:
        port = host.bridges[bridge].ports.get(ofport)
        if port is not None and port.type == "":
            res = fabric.inject(v.host, port.name, frame)
            trace = res.trace
        else:
            trace = host.inject_ofport(bridge, ofport, frame).trace
    except (EvaluationError, KeyError) as e:
        return f"(the evaluator cannot replay it: {e})"
    note = "\n(the path takes an entry learn() may add: the fresh evaluator has none)" if v.via_learned else ""
    return f"frame {frame} into {v.host}/{bridge} port {ofport}:\n{trace}{note}"
