"""`python -m bench trace`: ovsflow trace per frame on the 1,000-host / 4,000-network / 100,000-port
synthetic topology, beside `ovs-appctl ofproto/trace` on one loaded host; and the differential test's
full run (every lab and test topology, 50 random and 50 random routed topologies, every ordered pair
of ports, evaluator vs ofproto/trace, one private OVS per host).

Per frame: "cold" frames compile the hosts they visit (cached per host afterwards), "warm" frames
revisit cached hosts. Unicast in learn mode floods to every host of the network before learning, so a
cold frame of the synthetic topology visits ~25 hosts; with --learned it goes to one.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"large": (1000, 4000, 100_000), "tiny": (10, 40, 400)}


def _ms(xs: list[float]) -> list[float]:
    return [round(1000 * statistics.median(xs), 1), round(1000 * min(xs), 1), round(1000 * max(xs), 1)]


def _frames(topo: Any, n: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    by_net: dict[str, list[str]] = {}
    for p in topo.ports.values():
        by_net.setdefault(p.network, []).append(p.name)
    nets = sorted(k for k, v in by_net.items() if len(v) > 1)
    out = []
    for _ in range(n):
        a, b = rng.sample(sorted(by_net[rng.choice(nets)]), 2)
        out.append((a, b))
    return out


def per_frame(size: str, n: int) -> dict[str, Any]:
    from bench.synth import synthetic
    from ovsflow.model import load_topology_data
    from ovsflow.trace import Request, Tracer

    hosts, nets, ports = SIZES[size]
    t = time.monotonic()
    topo = load_topology_data(synthetic(hosts, nets, ports, ips=True), "bench")
    load_s = time.monotonic() - t
    tracer = Tracer(topo)
    pairs = _frames(topo, n)
    cold, warm, learned, visited = [], [], [], []
    for a, b in pairs:
        t = time.monotonic()
        r = tracer.run(Request(a, to=b))
        cold.append(time.monotonic() - t)
        visited.append(len(r.hosts_compiled))
        t = time.monotonic()
        tracer.run(Request(a, to=b))
        warm.append(time.monotonic() - t)
        t = time.monotonic()
        tracer.run(Request(a, to=b, learned=True))
        learned.append(time.monotonic() - t)
    return {"load_s": round(load_s, 2), "cold_ms": _ms(cold), "warm_ms": _ms(warm), "learned_warm_ms": _ms(learned),
            "hosts_per_frame": statistics.median(visited), "hosts_compiled": len(tracer.programs),
            "pairs": pairs, "tracer": tracer}


def ofproto_per_frame(tracer: Any, pairs: list[tuple[str, str]], ns: str) -> dict[str, Any]:
    """The first frame's host loaded into a private OVS; ofproto/trace of the frames that start there."""
    from ovsflow.lab import netns as nsmod
    from ovsflow.lab.ovs import OvsInstance
    from ovsflow.trace import Request
    from ovsflow.trace_diff import load_program
    from ovsflow.trace_live import flow_spec

    host = tracer.topo.ports[pairs[0][0]].host
    local = [p.name for p in tracer.topo.ports.values() if p.host == host]
    nsmod.netns_add(ns)
    inst = OvsInstance(host, Path(tempfile.mkdtemp(prefix="bench-trace-")), ns)
    try:
        inst.start()
        program = tracer.program(host)
        t = time.monotonic()
        load_program(inst, program)
        load_s = time.monotonic() - t
        br_int = program.bridge("int")
        times, mine = [], []
        for a in local[:20]:
            peer = next(p.name for p in tracer.topo.ports.values() if p.network == tracer.topo.ports[a].network and p.name != a)
            r = tracer.run(Request(a, to=peer))
            t = time.monotonic()
            tracer.run(Request(a, to=peer))
            mine.append(time.monotonic() - t)
            spec = flow_spec(r.probe.frame, br_int.port(tracer.topo.ports[a].iface).ofport)
            t = time.monotonic()
            inst.appctl("ofproto/trace", br_int.name, spec)
            times.append(time.monotonic() - t)
        return {"host": host, "flows": sum(len(b.flows) for b in program.bridges), "load_s": round(load_s, 2),
                "ofproto_trace_ms": _ms(times), "evaluator_one_host_path_ms": _ms(mine), "frames": len(times)}
    finally:
        inst.stop()
        nsmod.netns_delete(ns)


def differential_run(n_random: int, n_routed: int, files: list[Path], ns_prefix: str) -> dict[str, Any]:
    """Every file and n random (+ n routed) topologies through evaluator and ofproto/trace."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hypothesis import HealthCheck, given, settings
    from test_properties import topologies  # type: ignore[import-not-found]
    from test_routing import routed_topologies  # type: ignore[import-not-found]

    from ovsflow.lab import netns as nsmod
    from ovsflow.lab.ovs import OvsInstance
    from ovsflow.model import load_topology, load_topology_data
    from ovsflow.trace import Tracer
    from ovsflow.trace_diff import differential

    pool: list[OvsInstance] = []
    totals = {"topologies": 0, "traces": 0, "hops": 0, "disagreements": 0}
    bad: list[str] = []

    def one(topo: Any, what: str, kinds: tuple[str, ...]) -> None:
        while len(pool) < len(topo.hosts):
            ns = f"{ns_prefix}{len(pool)}"
            nsmod.netns_add(ns)
            pool.append(OvsInstance(f"hv{len(pool)}", Path(tempfile.mkdtemp(prefix="bench-diff-")), ns).start())
        r = differential(Tracer(topo), {h: pool[i] for i, h in enumerate(sorted(topo.hosts))}, kinds)
        totals["topologies"] += 1
        totals["traces"] += r.traces
        totals["hops"] += r.hops
        totals["disagreements"] += len(r.disagreements)
        bad.extend(f"{what}: {w} at {h.host}" for w, h in r.disagreements[:2])

    def cfg(n: int) -> settings:
        return settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), max_examples=n)

    t = time.monotonic()
    try:
        for f in files:
            one(load_topology(f), str(f.relative_to(ROOT)), ("icmp", "arp"))
        files_s = time.monotonic() - t
        cfg(n_random)(given(topologies())(lambda d: one(load_topology_data(d, "h"), "random", ("icmp", "arp"))))()
        cfg(n_routed)(given(routed_topologies())(lambda d: one(load_topology_data(d, "h"), "routed", ("icmp", "arp"))))()
    finally:
        for inst in pool:
            inst.stop()
            nsmod.netns_delete(inst.netns)
    total = time.monotonic() - t
    return {**totals, "files_s": round(files_s, 1), "total_s": round(total, 1), "first_disagreements": bad[:5]}


def run(quick: bool = False) -> list[dict[str, Any]]:
    import os

    size = "tiny" if quick else "large"
    pf = per_frame(size, 3 if quick else 20)
    tracer, pairs = pf.pop("tracer"), pf.pop("pairs")
    tag = f"obt{os.getpid()}"
    ovs = ofproto_per_frame(tracer, pairs, f"{tag}-o")
    hosts, nets, ports = SIZES[size]
    rows = [{
        "benchmark": "trace", "case": f"{size}: {hosts} hosts/{nets} nets/{ports} ports, per frame (median [min-max] ms)",
        "goal": "< 200 ms per frame",
        "figures": {
            "topology load (s)": pf["load_s"],
            "cold frame: compiles the hosts it visits (ms)": pf["cold_ms"],
            "hosts visited per cold frame (median; learn mode floods)": pf["hosts_per_frame"],
            "warm frame: hosts cached (ms)": pf["warm_ms"],
            "warm frame with --learned (3 frames: ARP, reply, frame) (ms)": pf["learned_warm_ms"],
            f"ofproto/trace on {ovs['host']} ({ovs['flows']} flows), one bridge pass (ms)": ovs["ofproto_trace_ms"],
            "evaluator, same frames, whole path (ms)": ovs["evaluator_one_host_path_ms"],
        },
        "raw": {**pf, "ofproto": ovs},
    }]
    files = sorted(ROOT.glob("labs/*/topology.yaml")) + sorted((ROOT / "tests" / "data").glob("*.yaml"))
    diff = differential_run(1 if quick else 50, 1 if quick else 50, files[:1] if quick else files, f"{tag}-d")
    rows.append({"benchmark": "trace", "case": "differential: evaluator vs ofproto/trace, every ordered pair, ICMP+ARP",
                 "goal": "0 disagreements",
                 "figures": {"topologies (files + random + routed)": diff["topologies"], "frames traced": diff["traces"],
                             "hops asked of OVS": diff["hops"], "disagreements": diff["disagreements"],
                             "files (s)": diff["files_s"], "total (s)": diff["total_s"]},
                 "raw": diff})
    return rows
