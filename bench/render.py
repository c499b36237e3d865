"""Benchmark 1: compile/render time and memory on synthetic topologies, flows vs the Neutron formula.

Each size runs in a fresh child process (`python -m bench.render SIZE`), so its peak RSS is its own.
Phases are timed separately: parse+validate the whole file, build the host-focused graph, compile and
render one host's script; then all hosts (from one full graph) where that is affordable, otherwise a
sample of hosts whose per-host median is scaled up (labelled as such).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": (3, 4, 24),
    "small": (10, 40, 1_000),
    "medium": (100, 400, 10_000),
    "large": (1_000, 4_000, 100_000),
}
QUICK = ("tiny", "small")
FULL = ("small", "medium", "large")


def _timed(fn, reps: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def worker(size: str, reps: int, mode: str = "learn") -> dict:
    from bench.synth import synthetic
    from ovsflow.compiler import compile_host
    from ovsflow.graph import TopologyGraph
    from ovsflow.model import load_topology
    from ovsflow.render import render_script, script_for

    hosts, nets, ports = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{size}.json"
        path.write_text(json.dumps(synthetic(hosts, nets, ports, mode=mode, ips=mode == "l2pop")))
        load_times, topo = _timed(lambda: load_topology(path), max(1, reps // 2))
    host = "hv1" if hosts > 1 else "hv0"
    graph_times, graph = _timed(lambda: TopologyGraph(topo, focus=host), reps)
    render_times, script = _timed(lambda: render_script(topo, host, graph=graph), reps)
    program = compile_host(topo, host, graph=graph)
    tun, brint = program.bridge("tun"), program.bridge("int")
    n_tunnels = sum(1 for p in tun.ports if p.type != "patch")
    n_local = len(program.local_vlans)
    remote = [p for n in program.local_vlans for p in graph.ports_of(n) if p.host != host]
    remote_macs, remote_ips = len(remote), sum(1 for p in remote if p.ip)
    neutron = 15 + n_tunnels + 2 * n_local  # + 1 per remote MAC (learned at run time in learn mode)
    # all hosts: full graph once, then every host (or a sample, scaled, when that would take minutes)
    t = time.perf_counter()
    full = TopologyGraph(topo)
    full_graph_s = time.perf_counter() - t
    names = sorted(topo.hosts)
    sample = names if len(names) <= 100 else names[:: len(names) // 50][:50]
    if mode == "l2pop":  # flow counts are the point here; the all-hosts time is the learn case's
        sample = sample[:3]
    per_host = []
    for h in sample:
        t = time.perf_counter()
        script_for(compile_host(topo, h, graph=full), topo)
        per_host.append(time.perf_counter() - t)
    all_hosts_s = full_graph_s + (sum(per_host) if sample is names else statistics.median(per_host) * len(names))
    return {
        "size": size, "mode": mode, "hosts": hosts, "networks": nets, "ports": ports,
        "load_s": load_times, "graph_s": graph_times, "render_one_s": render_times,
        "one_host_end_to_end_s": statistics.median(load_times) + statistics.median(graph_times) + statistics.median(render_times),
        "all_hosts_s": all_hosts_s, "all_hosts_measured": sample is names, "all_hosts_sampled": len(sample),
        "flows_tun": len(tun.flows), "flows_int": len(brint.flows), "tunnels": n_tunnels,
        "local_networks": n_local, "remote_macs": remote_macs, "neutron_formula_tun": neutron,
        "neutron_formula_with_macs": neutron + remote_macs, "remote_ips": remote_ips,
        "neutron_formula_l2pop": neutron + remote_macs + remote_ips, "groups_tun": len(tun.groups),
        "script_lines": script.count("\n"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(quick: bool = False) -> list[dict]:
    rows = []
    cases = [(s, "learn") for s in (QUICK if quick else FULL)] + [("tiny" if quick else "large", "l2pop")]
    for size, mode in cases:
        reps = 3 if quick or size == "large" else 5
        proc = subprocess.run([sys.executable, "-m", "bench.render", size, str(reps), mode], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.render {size} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout)
        med = statistics.median
        if mode == "l2pop":
            rows.append({
                "benchmark": "render", "case": f"{size}, l2pop: {r['hosts']} hosts/{r['networks']} nets/{r['ports']} ports with IPs",
                "figures": {
                    "compile+render one host (s, median [min-max])": [med(r["render_one_s"]), min(r["render_one_s"]), max(r["render_one_s"])],
                    "peak RSS (MB)": r["peak_rss_mb"],
                    "br-tun flows / Neutron l2pop formula (15+tunnels+2*nets+MACs+IPs)": [r["flows_tun"], r["neutron_formula_l2pop"]],
                    "flood groups": r["groups_tun"],
                    "remote MACs / remote IPs on local nets": [r["remote_macs"], r["remote_ips"]],
                },
                "goal": "", "raw": r,
            })
            continue
        rows.append({
            "benchmark": "render", "case": f"{size}: {r['hosts']} hosts/{r['networks']} nets/{r['ports']} ports",
            "figures": {
                "compile+render one host (s, median [min-max])": [med(r["render_one_s"]), min(r["render_one_s"]), max(r["render_one_s"])],
                "parse+validate whole file (s, median)": med(r["load_s"]),
                "one host end to end (s)": r["one_host_end_to_end_s"],
                "all hosts (s)" + ("" if r["all_hosts_measured"] else f" [scaled from {r['all_hosts_sampled']} hosts]"): r["all_hosts_s"],
                "peak RSS (MB)": r["peak_rss_mb"],
                "br-tun flows / Neutron formula (15+tunnels+2*nets)": [r["flows_tun"], r["neutron_formula_tun"]],
                "br-int flows": r["flows_int"],
                "remote MACs on local nets (learned, not installed)": r["remote_macs"],
            },
            "goal": "one host < 1 s and < 500 MB at 1,000 hosts / 4,000 nets / 100k ports" if size == "large" else "",
            "raw": r,
        })
    return rows


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], int(sys.argv[2]), *(sys.argv[3:4] or ["learn"]))))
