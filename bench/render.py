"""Benchmark 1: compile/render time and memory on synthetic topologies, flows vs the Neutron formula.

Each size runs in a fresh child process (`python -m bench.render SIZE`), so its peak RSS is its own.
Phases are timed separately: parse+validate the whole file, build the host-focused graph, compile and
render one host's script; then all hosts (from one full graph) where that is affordable, otherwise a
sample of hosts whose per-host median is scaled up (labelled as such).

Beside those, what an operator runs: `ovsflow render FILE --host H` as one fresh process per
repetition (load and validate the whole file, build the host's graph, render its script), from the
same topology written as YAML (the documented format) and as JSON, time and peak RSS side by side;
and hostile inputs (an alias bomb, deep nesting, a 5,000-digit integer, /dev/zero, a 40 MB file...)
each refused in a fresh process, time and peak RSS of the refusal.
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


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (getrusage's ru_maxrss keeps the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def measure_file(path: str, host: str) -> dict:
    """One `ovsflow render --host` worth of work on a file, in this (fresh) process."""
    t = time.perf_counter()
    from ovsflow.graph import TopologyGraph
    from ovsflow.model import load_topology
    from ovsflow.render import render_script

    imports = time.perf_counter() - t
    t = time.perf_counter()
    topo = load_topology(path)
    loaded = time.perf_counter()
    script = render_script(topo, host, graph=TopologyGraph(topo, focus=host))
    done = time.perf_counter()
    return {"validate_s": loaded - t, "render_s": done - loaded, "total_s": done - t, "imports_s": imports,
            "script_lines": script.count("\n"), "peak_rss_mb": peak_rss_mb()}


def hostile_inputs(tmp: Path) -> dict[str, Path]:
    """The worst inputs the fuzzer and the tests know, as files."""
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
    files = {
        "billion laughs (YAML aliases, 744 bytes)": "\n".join(laughs) + "\n",
        "aliases 10^8 (YAML)": "a: &a [x" + ",x" * 99 + "]\n"
                               + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 100) + "]\n" for p, c in zip("abc", "bcd")),
        "nesting 100,000 deep (YAML flow)": "a: " + "[" * 100_000 + "\n",
        "nesting 100,000 deep (JSON)": "[" * 100_000,
        "5,000-digit integer (YAML)": "a: " + "9" * 5_000 + "\n",
        "1,000,000-entry sequence (YAML flow, 2 MB)": "a: [" + "1," * 999_999 + "1]\n",
        "1,000,000-entry sequence (YAML block, 4 MB)": "a:\n" + "- 1\n" * 1_000_000,
        "100,000 nodes with a tag (YAML, 1 MB)": "a: !!str x\nb: [" + "1," * 99_990 + "1]\n",
        "30 MB of one JSON string": '"' + "x" * 30_000_000 + '"',
    }
    out = {}
    for i, (name, text) in enumerate(files.items()):
        path = tmp / (f"h{i}.json" if "JSON" in name else f"h{i}.yaml")
        path.write_text(text)
        out[name] = path
    sparse = tmp / "sparse.yaml"
    with sparse.open("wb") as f:
        f.truncate(40 * 1024 * 1024)
    out["40 MB file (sparse)"] = sparse
    out["/dev/zero"] = Path("/dev/zero")
    out["/dev/urandom"] = Path("/dev/urandom")
    return out


def refuse(path: str) -> dict:
    from ovsflow.model import TopologyError, load_topology

    t = time.perf_counter()
    try:
        load_topology(path)
        refused, first = False, ""
    except TopologyError as exc:
        refused, first = True, str(exc.problems[0])
    return {"refused": refused, "s": time.perf_counter() - t, "message": first[:160], "peak_rss_mb": peak_rss_mb()}


def _child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.render", *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.render {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def file_rows(quick: bool) -> list[dict]:
    import yaml

    from bench.synth import synthetic

    rows = []
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("tiny", "small") if quick else ("large",):
            hosts, nets, ports = SIZES[size]
            data = synthetic(hosts, nets, ports)
            paths = {"yaml": Path(tmp) / f"{size}.yaml", "json": Path(tmp) / f"{size}.json"}
            paths["yaml"].write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False))
            paths["json"].write_text(json.dumps(data))
            runs = {fmt: [_child("file", str(p), "hv1") for _ in range(2 if quick else 3)] for fmt, p in paths.items()}
            figures: dict = {}
            for fmt in ("yaml", "json"):
                r = runs[fmt]
                figures[f"{fmt}: validate + render one host (s, median [min-max])"] = [
                    med(x["total_s"] for x in r), min(x["total_s"] for x in r), max(x["total_s"] for x in r)]
                figures[f"{fmt}: of which load + validate (s, median)"] = med(x["validate_s"] for x in r)
                figures[f"{fmt}: peak RSS (MB, max)"] = max(x["peak_rss_mb"] for x in r)
            figures["file size yaml / json (MB)"] = [paths["yaml"].stat().st_size / 1e6, paths["json"].stat().st_size / 1e6]
            rows.append({"benchmark": "render", "case": f"file, {size}: {hosts} hosts/{nets} nets/{ports} ports, "
                         "ovsflow render --host as a fresh process",
                         "figures": figures, "goal": "YAML < 1 s and < 500 MB" if size == "large" else "",
                         "raw": {"size": size, "mode": "file", "runs": runs}})
        results = {name: _child("refuse", str(path)) for name, path in hostile_inputs(Path(tmp)).items()}
    worst = max(results, key=lambda k: results[k]["s"])
    figures = {f"{name} (s / MB)": [r["s"], r["peak_rss_mb"]] for name, r in results.items()}
    figures["all refused"] = all(r["refused"] for r in results.values())
    figures[f"worst: {worst} (s / MB)"] = [results[worst]["s"], max(r["peak_rss_mb"] for r in results.values())]
    rows.append({"benchmark": "render", "case": "hostile inputs refused (fresh process each; MB is the process's peak RSS)",
                 "figures": figures, "goal": "each refused in < 1 s and < 200 MB",
                 "raw": {"size": "hostile", "mode": "refuse", "results": results}})
    return rows


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
                    "compile+render one host (s, median [min-max])": [
                        med(r["render_one_s"]), min(r["render_one_s"]), max(r["render_one_s"])],
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
    return rows + file_rows(quick)


if __name__ == "__main__":
    if sys.argv[1] == "file":
        print(json.dumps(measure_file(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "refuse":
        print(json.dumps(refuse(sys.argv[2])))
    else:
        print(json.dumps(worker(sys.argv[1], int(sys.argv[2]), *(sys.argv[3:4] or ["learn"]))))
