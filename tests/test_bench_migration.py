"""The migration benchmark (bench/migration.py) at its smallest (one move of each kind per mode), so
it never rots. Not a timed test: it checks the run's shape and facts that hold at any speed — every
ping resumed, the app updated exactly the switches the compiler says a move changes (the pinger's
host only in l2pop), it pushed nothing for the in-place re-plug, the silence's parts add up to it,
and the lab, its namespaces and ryu-manager are gone afterwards."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lab_leftovers, lab_name, root_veths

ROOT = Path(__file__).resolve().parent.parent


def ryu_pids() -> set[int]:
    """ryu-manager processes of migration benchmarks (their log config lives in its work dir)."""
    out = subprocess.run(["pgrep", "-f", "ryu-manager ovsflow.app .*ovsflow-bench-migration-"],
                         capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.ovs
def test_migration_benchmark_quick(tmp_path: Path, lab_base: Path) -> None:
    name = lab_name("bmg")
    veths = root_veths()
    ryu_before = ryu_pids()
    proc = subprocess.run([sys.executable, "-m", "bench", "migration", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OVSFLOW_BENCH_LAB": name})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lab_leftovers(name, lab_base) == {"netns": [], "ovs": [], "dir": []}
    assert root_veths() <= veths
    assert not (ryu_pids() - ryu_before), "the benchmark's ryu-manager is still running"

    [result] = list(tmp_path.glob("*-quick.json"))
    rows = {r["case"].split(":")[0]: r for r in json.loads(result.read_text())["rows"]}
    assert sorted(rows) == ["l2pop", "learn"]
    expected = {  # bridges whose program a move of the VM between hv2 and hv3 changes
        "l2pop": {"hv1/br-tun", "hv2/br-int", "hv2/br-tun", "hv3/br-int", "hv3/br-tun"},
        # nothing in hv1's program says where vm5 is; every br-tun of red replaces what learn() knew
        "learn": {"hv1/br-tun", "hv2/br-tun", "hv3/br-tun", "hv2/br-int", "hv3/br-int"},
    }
    for mode, row in rows.items():
        samples = row["raw"]["samples"]
        assert sorted(s["kind"] for s in samples) == ["file", "replug", "sighup"]
        assert all(s["mode"] == mode for s in samples)
        for s in samples:
            assert s["replies_before"] > 0, s  # the path worked before the move
            assert s["resumed"] and s["replies_after_ready"] > 0, s
            assert 0 < s["gap_s"] < math.inf and s["replug_s"] > 0, s
            parts = s["replug_in_gap_s"] + s["program_in_gap_s"] + s["rest_s"]
            assert abs(parts - s["move_gap_s"]) < 1e-6 and s["move_gap_s"] <= s["gap_s"] + 1e-6, s
            if s["kind"] == "replug":
                assert s["src"] == s["dst"] and s["affected"] == [] and s["app_updates"] == 0, s
                assert s["program_in_gap_s"] == 0
            else:
                assert s["src"] != s["dst"], s
                assert set(s["affected"]) == set(s["updated"]) == expected[mode], s
                assert s["to_update"] == len(expected[mode])
                # with a SIGHUP right after the write, inotify may report the write first
                assert s["trigger_seen"] in (("SIGHUP", "file change") if s["kind"] == "sighup" else ("file change",)), s
                assert s["write_to_last_s"] > 0 and s["reload_to_last_s"] > 0, s
        assert row["figures"]["app updates during the floor's re-plugs"] == 0
        assert row["figures"]["moves whose ping resumed / moves"] == [3, 3]
