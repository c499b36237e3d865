"""bench trace --quick runs in every test run (tiny sizes), so it never rots. Not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.ovs
def test_trace_benchmark_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "trace", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "== trace: tiny: 10 hosts/40 nets/400 ports, per frame" in proc.stdout
    assert "== trace: differential: evaluator vs ofproto/trace" in proc.stdout
    [result] = list(tmp_path.glob("*-quick.json"))
    frame, diff = json.loads(result.read_text())["rows"]
    raw = frame["raw"]
    assert raw["hosts_per_frame"] >= 1 and all(x > 0 for x in raw["cold_ms"] + raw["warm_ms"])
    assert raw["ofproto"]["frames"] > 0 and all(x > 0 for x in raw["ofproto"]["ofproto_trace_ms"])
    assert diff["raw"]["topologies"] == 3 and diff["raw"]["traces"] > 0 and diff["raw"]["disagreements"] == 0
