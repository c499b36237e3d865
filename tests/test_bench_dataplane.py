"""The data-plane benchmark runs (1 round of 1 s) in the suite so it never rots. Not a timed test:
it asserts the run's shape and facts that hold at any speed, never a throughput figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lab_leftovers, lab_name, root_veths

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.ovs
def test_dataplane_benchmark_quick(tmp_path: Path, lab_base: Path) -> None:
    name = lab_name("bdp")
    veths = root_veths()
    proc = subprocess.run([sys.executable, "-m", "bench", "dataplane", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OVSFLOW_BENCH_LAB": name})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab_leftovers(name, lab_base) == {"netns": [], "ovs": [], "dir": []}
    assert root_veths() <= veths
    [result] = list(tmp_path.glob("*-quick.json"))
    rows = {r["case"].split()[0]: r for r in json.loads(result.read_text())["rows"]}
    assert sorted(rows) == ["GRE", "VXLAN", "lab"]
    assert rows.pop("lab")["figures"]["lab down (s)"] > 0
    for tunnel, row in rows.items():
        samples = row["raw"]["samples"]
        assert {"pipeline", "baseline"} <= set(samples)
        for variant, runs in samples.items():
            assert len(runs) == 1 and runs[0]["mbit"] > 0, (tunnel, variant, runs)
        for variant in ("pipeline", "baseline"):
            [run] = samples[variant]
            # the TCP stream is cached in both hypervisors' datapaths while it runs
            assert min(run["megaflows_active"]) >= 1 and min(run["megaflows"]) >= min(run["megaflows_active"])
            # after the warm-up the stream runs from the datapath cache: upcalls are a tiny share
            # of the packets (a pipeline that defeated caching would send most of them up)
            assert min(run["dp_packets"]) > 1000 and max(run["upcalls"]) <= 0.01 * min(run["dp_packets"]), run
            assert len(run["active_flows"]) == 2 and all(run["active_flows"])
            assert min(run["vswitchd_cpu_s"]) > 0  # each switch burns CPU moving the stream
        assert samples["pipeline"][0]["controller_flows"] == 0  # render mode: nothing can packet-in
        assert row["figures"]["pipeline / baseline, ratio of medians (goal >= 0.95)"] > 0
    # this kernel has vxlan; the VXLAN row carries the kernel reference
    assert set(rows["VXLAN"]["raw"]["samples"]) == {"pipeline", "baseline", "pipeline-again", "kernel", "kernel-offload"}
