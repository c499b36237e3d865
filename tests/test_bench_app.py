"""The live-controller benchmarks (bench/app.py) at tiny sizes, so they never rot. Not a timed test:
it checks the shape of the results and the facts that hold at any speed (what the switches hold,
zero flow changes on a no-op resync and on unaffected switches)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.ovs
def test_app_benchmark_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "app", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result] = list(tmp_path.glob("*-quick.json"))
    bulk, resync, latency = json.loads(result.read_text())["rows"]

    assert bulk["case"].startswith("bulk install") and bulk["raw"]["flows"] > 2000
    by_app, by_ofctl = bulk["figures"]["ovsflow flows on the switch after app / after ovs-ofctl"]
    assert by_app == by_ofctl == bulk["raw"]["flows"]
    assert len(bulk["raw"]["times"]["app"]) == len(bulk["raw"]["times"]["ofctl"]) == 2
    assert all(t > 0 for ts in bulk["raw"]["times"].values() for t in ts)

    assert resync["case"].startswith("no-op resync")
    assert resync["raw"]["monitor_events"] == [0] and resync["raw"]["logged_changes"] == [0]
    assert all(t > 0 for t in resync["raw"]["connect_to_sync"])

    assert latency["case"].startswith("update latency: 3 hosts")
    # at least the port's host's br-int and every other host's br-tun (l2pop: they name the new port);
    # the benchmark waited for each affected bridge's monitor to report a change
    assert len(latency["raw"]["affected"]) == 4 and all(n >= 3 for n in latency["raw"]["affected"])
    assert latency["raw"]["stray"] == [0] * 4
    assert len(latency["raw"]["file"]) == len(latency["raw"]["sighup"]) == 2
    assert all(t > 0 for t in latency["raw"]["file"] + latency["raw"]["sighup"])
