"""`python -m bench verify`: `ovsflow verify` on synthetic topologies (synth.py), small / medium /
large, each in a fresh process (peak RSS its own). Hosts are verified one at a time (compositional:
a host's proof needs only its own program and the topology), so per-host time is the figure; at
large a sample of hosts is verified and the total scaled up, labelled so. The same hosts are then
compiled and verified again in one forked process per CPU (as `ovsflow verify` does), wall time
measured (scaled the same way at large)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

SIZES = {"small": (10, 40, 1_000), "medium": (100, 400, 10_000), "large": (1_000, 4_000, 100_000)}
QUICK = {"tiny": (5, 10, 60)}
SAMPLE = {"large": 20}  # hosts verified at this size (the rest scaled from their median)

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, ".")
from bench.synth import synthetic
from ovsflow.compiler import compile_host
from ovsflow.graph import TopologyGraph
from ovsflow.model import load_topology_data
from ovsflow.verify import verify_host
hosts, nets, ports, sample = (int(x) for x in sys.argv[1:5])
t0 = time.perf_counter()
topo = load_topology_data(synthetic(hosts, nets, ports), "synth")
graph = TopologyGraph(topo)
t1 = time.perf_counter()
names = sorted(topo.hosts)
names = names[:: max(1, len(names) // sample)][:sample] if sample else names
comp, ver, classes, flows, bad = [], [], 0, 0, 0
for h in names:
    a = time.perf_counter()
    prog = compile_host(topo, h, graph=graph)
    b = time.perf_counter()
    report, _ = verify_host(topo, graph, prog)
    c = time.perf_counter()
    comp.append(b - a); ver.append(c - b)
    classes += report.classes; flows += report.flows; bad += len(report.violations)
# the same hosts again, compile + verify in `workers` forked processes (as `ovsflow verify` runs them)
import multiprocessing, os
from concurrent.futures import ProcessPoolExecutor
from ovsflow.verify.run import _init_worker, _one_host
workers = len(os.sched_getaffinity(0))
d = time.perf_counter()
with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker,
                         initargs=(topo, graph)) as pool:
    par = list(pool.map(_one_host, names))
wall = time.perf_counter() - d
assert [r[0].classes for r in par] and sum(r[0].classes for r in par) == classes
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load": t1 - t0, "compile": comp, "verify": ver, "classes": classes, "flows": flows,
                  "violations": bad, "rss": rss, "hosts": len(names), "all_hosts": len(topo.hosts),
                  "workers": workers, "parallel_wall": wall}))
"""


def one(name: str, size: tuple[int, int, int], sample: int) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, size), str(sample)], capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ver, comp = r["verify"], r["compile"]
    scaled = r["hosts"] != r["all_hosts"]
    total = statistics.median(ver) * r["all_hosts"] if scaled else sum(ver)
    figures = {
        "hosts / networks / ports": f"{size[0]:,} / {size[1]:,} / {size[2]:,}",
        "verify per host, median [min-max] (s)": [statistics.median(ver), min(ver), max(ver)],
        "compile per host, median (s)": statistics.median(comp),
        "verify all hosts (s)" + (f" (scaled from {r['hosts']})" if scaled else ""): total,
        "compile + verify all hosts (s)" + (" (scaled)" if scaled else ""):
            (statistics.median(ver) + statistics.median(comp)) * r["all_hosts"] if scaled else sum(ver) + sum(comp),
        f"compile + verify all hosts, {r['workers']} processes (s)" + (" (scaled)" if scaled else ""):
            r["parallel_wall"] * r["all_hosts"] / r["hosts"],
        "header classes per host": r["classes"] // max(1, r["hosts"]),
        "flows per host": r["flows"] // max(1, r["hosts"]),
        "violations": r["violations"],
        "parse + graph (s)": r["load"],
        "peak RSS (MB)": r["rss"],
    }
    return {"benchmark": "verify", "case": name, "figures": figures, "goal": "large: < 60 s, < 2 GB" if name == "large" else "",
            "raw": r}


def run(quick: bool = False) -> list[dict[str, object]]:
    sizes = QUICK if quick else SIZES
    rows = []
    for name, size in sizes.items():
        start = time.perf_counter()
        rows.append(one(name, size, SAMPLE.get(name, 0)))
        print(f"verify {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return rows
