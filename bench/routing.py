"""Benchmark 9: routers. Routed beside switched throughput, the flows a router adds, and scale.

  throughput  labs/07-cross-subnet, iperf3 TCP hv1 -> hv2, interleaved rounds (order rotated):
              switched   vm3 -> vm2, same network (db-c), same two hosts;
              routed     vm4 -> vm5, web-d -> db-d through the distributed router r2 (one leg);
              central    vm1 -> vm2, web-c -> db-c through r1 on hv3 (two legs; for reference).
              Ratio of medians routed / switched (goal >= 0.9). Megaflows and upcalls per stream
              on both hosts (and hv3 for `central`), sampled as bench/dataplane.py does
              (ovsflow.lab.throughput: datapath_flows, pmd_stats).
  flows       the formula of bench/routing_flows.py against the compiler on synthetic topologies
              (every router mode and network mode): exact for what routing emits, host by host.
  scale       one host of the 1,000-host synthetic topology (bench/synth.py) with 2,000 routers
              (every network paired, modes alternating): load, graph, compile + render.

  python -m bench routing [--quick]
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "labs" / "07-cross-subnet" / "topology.yaml"
STREAMS = {"switched": ("vm3", "vm2"), "routed": ("vm4", "vm5"), "central": ("vm1", "vm2")}


def _spread(xs: list[float]) -> list[float]:
    return [statistics.median(xs), min(xs), max(xs)]


def measure(state, src: str, dst: str, seconds: int, omit: int) -> dict:
    """One iperf3 run with the datapath sampled mid-run on every host (all three: the central
    stream crosses hv3) and upcalls counted from cleared counters."""
    from ovsflow.lab import lab as labmod
    from ovsflow.lab import throughput as tp

    hosts = sorted(state.hosts)
    labmod.ping(state, src, state.vms[dst]["ip"], 2)
    for h in hosts:
        tp.pmd_stats(state, h, clear=True)
    mid: dict = {}

    def sample() -> None:
        mid.update({h: tp.datapath_flows(state, h) for h in hosts})

    mbit, retr = tp.iperf(state, src, dst, seconds, omit=omit, during=sample)
    stats = {h: tp.pmd_stats(state, h) for h in hosts}
    return {"mbit": mbit, "retransmits": retr, "megaflows": {h: mid[h][0] for h in hosts},
            "megaflows_active": {h: mid[h][1] for h in hosts},
            "upcalls": {h: stats[h]["upcalls"] + stats[h]["failed_upcalls"] for h in hosts},
            "dp_packets": {h: stats[h]["packets"] for h in hosts}, "load": os.getloadavg()[0]}


def throughput(quick: bool) -> dict:
    from ovsflow.lab import lab as labmod
    from ovsflow.model import load_topology

    rounds, seconds, omit = (1, 1, 0) if quick else (5, 10, 1)
    name = os.environ.get("OVSFLOW_BENCH_LAB") or f"brt{os.getpid() % 100000}"
    samples: dict[str, list[dict]] = {s: [] for s in STREAMS}
    try:
        state = labmod.up(load_topology(TOPOLOGY), name)
        for src, dst in STREAMS.values():  # unrecorded: first contact through fresh caches
            measure(state, src, dst, 1, 0)
        order = list(STREAMS)
        for r in range(rounds):
            k = r % len(order)
            for s in order[k:] + order[:k]:
                samples[s].append(measure(state, *STREAMS[s], seconds, omit))
    finally:
        labmod.down(name)
    med = statistics.median
    mb = {s: [x["mbit"] for x in samples[s]] for s in STREAMS}
    figures: dict[str, object] = {f"{s} {a}@hv1 -> {b} (Mbit/s, median [min-max])": _spread(mb[s])
                                  for s, (a, b) in STREAMS.items()}
    figures["routed / switched, ratio of medians (goal >= 0.9)"] = med(mb["routed"]) / med(mb["switched"])
    figures["routed / switched, per round (median [min-max])"] = _spread([a / b for a, b in zip(mb["routed"], mb["switched"])])
    figures["central (two legs via hv3) / switched, ratio of medians"] = med(mb["central"]) / med(mb["switched"])
    for s in STREAMS:
        figures[f"{s}: megaflows mid-run hv1 / hv2 / hv3 (max)"] = [
            max(x["megaflows"][h] for x in samples[s]) for h in ("hv1", "hv2", "hv3")]
        figures[f"{s}: megaflows used in the last 1 s hv1 / hv2 / hv3 (max)"] = [
            max(x["megaflows_active"][h] for x in samples[s]) for h in ("hv1", "hv2", "hv3")]
        figures[f"{s}: upcalls per run hv1 / hv2 / hv3 (max)"] = [
            max(x["upcalls"][h] for x in samples[s]) for h in ("hv1", "hv2", "hv3")]
        figures[f"{s}: datapath packets per run hv1 / hv2 / hv3 (median)"] = [
            int(med(x["dp_packets"][h] for x in samples[s])) for h in ("hv1", "hv2", "hv3")]
    figures["1-min load average during the runs (median [min-max]; 2 cores, shared)"] = _spread(
        [x["load"] for s in STREAMS for x in samples[s]])
    return {"benchmark": "routing", "case": f"throughput, labs/07-cross-subnet hv1 -> hv2, {rounds} interleaved rounds x {seconds} s",
            "goal": "routed >= 0.9x switched (same run, interleaved)", "figures": figures,
            "raw": {"samples": samples, "rounds": rounds, "seconds": seconds}}


def flows(quick: bool) -> dict:
    from bench.routing_flows import check_topology
    from bench.synth import synthetic
    from ovsflow.model import read_document

    seeds = (1,) if quick else (1, 2, 3)
    cases = [dict(hosts=h, networks=8, ports=p, routers=r, router_mode=m, mode=md, seed=s)
             for m in ("distributed", "centralized", "mixed") for md in ("learn", "l2pop") for s in seeds
             for h in ((3, 6) if quick else (3, 6, 12)) for r in (1, 4) for p in ((8, 40) if quick else (8, 12, 40))]
    rows = [r for c in cases for r in check_topology(synthetic(**c))]
    for f in ("labs/07-cross-subnet/topology.yaml", "tests/data/routed.yaml"):
        rows += check_topology(read_document(ROOT / f), f)
    exact = sum(r["routing_compiler"] == r["formula"] for r in rows)
    estimate = sum(r["host_delta"] == r["estimate"] for r in rows)
    # the common case, measured: distributed, learn, every network on several hosts
    common = check_topology(synthetic(12, 8, 96, routers=4, router_mode="distributed", seed=5))
    per_router = statistics.median(r["routing_compiler"] / r["routers"] for r in common if r["routers"])
    per_net = statistics.median(r["terms"]["gateway"] / 4 for r in common)
    figures = {
        "hosts checked (synthetic: 3 router modes x 2 network modes; + lab 07 + routed.yaml)": len(rows),
        "routing flows = formula, exactly (hosts)": f"{exact} of {len(rows)}",
        "whole host's delta = formula + side-effect estimate (hosts)": f"{estimate} of {len(rows)}",
        "12 hosts/8 nets/96 ports, 4 distributed routers: routing flows per host (median [min-max])": _spread(
            [float(r["routing_compiler"]) for r in common]),
        "... per router on a host (median)": per_router,
        "... routed networks with a port on a host (median)": per_net,
        "... flows per host beside routing: host delta - routing flows (median)": statistics.median(
            r["host_delta"] - r["routing_compiler"] for r in common),
    }
    return {"benchmark": "routing", "case": "flows a router adds per host: formula (bench/routing_flows.py) vs compiler",
            "goal": "formula exact for every host", "figures": figures,
            "raw": {"mismatches": [r for r in rows if r["routing_compiler"] != r["formula"]][:20], "hosts": len(rows),
                    "exact": exact, "estimate_exact": estimate}}


def scale(quick: bool) -> dict:
    import json
    import tempfile

    from bench.synth import synthetic
    from ovsflow.compiler import compile_host
    from ovsflow.graph import TopologyGraph
    from ovsflow.model import load_topology
    from ovsflow.render import render_script

    hosts, nets, ports = (10, 40, 1_000) if quick else (1_000, 4_000, 100_000)
    reps = 2 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "routed.json"
        path.write_text(json.dumps(synthetic(hosts, nets, ports, routers=nets // 2, router_mode="mixed")))
        t = time.perf_counter()
        topo = load_topology(path)
        load_s = time.perf_counter() - t
    graph_s, render_s = [], []
    for _ in range(reps):
        t = time.perf_counter()
        graph = TopologyGraph(topo, focus="hv1")
        graph_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        script = render_script(topo, "hv1", graph=graph)
        render_s.append(time.perf_counter() - t)
    program = compile_host(topo, "hv1", graph=graph)
    totals = [g + r for g, r in zip(graph_s, render_s)]
    figures = {
        "compile + render one host (graph + render_script, s, median [min-max])": _spread(totals),
        "... graph (s, median)": statistics.median(graph_s), "... render (s, median)": statistics.median(render_s),
        "load + validate the file (s, once)": load_s,
        "routers on hv1 / routers in the topology": [len(graph.routers_on("hv1")), len(topo.routers)],
        "flows on hv1: br-int / br-tun": [len(program.bridge("int").flows), len(program.bridge("tun").flows)],
        "script lines": script.count("\n"),
    }
    return {"benchmark": "routing", "case": f"scale: {hosts} hosts / {nets} nets / {ports} ports, {nets // 2} routers (mixed modes)",
            "goal": "one host < 1 s" if not quick else "", "figures": figures,
            "raw": {"graph_s": graph_s, "render_s": render_s, "load_s": load_s}}


def run(quick: bool = False) -> list[dict]:
    return [flows(quick), scale(quick), throughput(quick)]
