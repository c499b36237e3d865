"""The benchmarks run (tiny sizes) in every test run, so they never rot. Not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_render_benchmark_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "render", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "== render: tiny: 3 hosts/4 nets/24 ports" in proc.stdout
    assert "br-tun flows / Neutron formula" in proc.stdout
    assert "== render: file, small: 10 hosts/40 nets/1000 ports, ovsflow render --host as a fresh process" in proc.stdout
    assert "yaml: validate + render one host" in proc.stdout and "json: validate + render one host" in proc.stdout
    assert "== render: hostile inputs refused" in proc.stdout
    [result] = list(tmp_path.glob("*-quick.json"))
    all_rows = json.loads(result.read_text())["rows"]
    assert [(r["raw"]["size"], r["raw"]["mode"]) for r in all_rows] == [
        ("tiny", "learn"), ("small", "learn"), ("tiny", "l2pop"), ("tiny", "file"), ("small", "file"), ("hostile", "refuse")]
    rows, files, hostile = all_rows[:3], all_rows[3:5], all_rows[5]
    for row in files:
        for fmt in ("yaml", "json"):
            runs = row["raw"]["runs"][fmt]
            assert len(runs) == 2 and all(r["total_s"] > 0 and r["peak_rss_mb"] > 0 and r["script_lines"] > 20 for r in runs)
        # the same topology gives the same script whichever format it was written in
        assert {r["script_lines"] for fmt in ("yaml", "json") for r in row["raw"]["runs"][fmt]} == {row["raw"]["runs"]["json"][0]["script_lines"]}  # noqa: E501
    results = hostile["raw"]["results"]
    assert len(results) >= 10 and all(r["refused"] and r["message"] for r in results.values())
    assert "billion laughs (YAML aliases, 744 bytes)" in results and "/dev/zero" in results
    assert "aliases expand to more than" in results["billion laughs (YAML aliases, 744 bytes)"]["message"]
    assert hostile["figures"]["all refused"] is True
    l2pop = rows[-1]["raw"]
    assert l2pop["flows_tun"] >= 15 + l2pop["remote_macs"] and l2pop["remote_ips"] == l2pop["remote_macs"] > 0
    for r in rows:
        raw = r["raw"]
        # the reported counts are the program's: compile the same synthetic topology independently
        program = _bench_host_program(raw["size"], raw["mode"])
        assert (raw["flows_tun"], raw["tunnels"]) == (len(program.bridge("tun").flows), len(program.bridge("tun").ports) - 1)
        if raw["mode"] == "learn":  # learn mode installs what Neutron's br-tun does, give or take a flow
            assert abs(raw["flows_tun"] - raw["neutron_formula_tun"]) <= 0.1 * raw["neutron_formula_tun"], raw
        assert all(t > 0 for t in raw["render_one_s"]) and raw["peak_rss_mb"] > 0


def _bench_host_program(size: str, mode: str):
    """The host program bench/render measures for a size and mode, compiled here without the benchmark."""
    sys.path.insert(0, str(ROOT))
    from bench.render import SIZES
    from bench.synth import synthetic
    from ovsflow.compiler import compile_host
    from ovsflow.model import load_topology_data

    hosts, nets, ports = SIZES[size]
    topo = load_topology_data(synthetic(hosts, nets, ports, mode=mode, ips=mode == "l2pop"), "bench")
    return compile_host(topo, "hv1" if hosts > 1 else "hv0")


def test_unknown_benchmark_is_one_line_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown benchmark" in proc.stderr


import pytest  # noqa: E402


@pytest.mark.ovs
def test_install_benchmark_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "install", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [result] = list(tmp_path.glob("*-quick.json"))
    [row] = json.loads(result.read_text())["rows"]
    raw = row["raw"]
    assert row["figures"]["flows on the switch after the last load"] == raw["flows"] > 2000
    assert all(len(v) == 2 and min(v) > 0 for v in raw["times"].values())
