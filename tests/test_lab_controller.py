"""Issue 17: `ovsflow lab up TOPOLOGY --controller` and `ovsflow demo --render`, as a user runs them.

`lab up --controller` must leave a lab whose six switches hold exactly the rendered program (the
comparison of tests/test_app_lab.py: `ovs-ofctl diff-flows` against the render, and the groups),
programmed by a `ryu-manager ovsflow.app` that outlives the command; `lab check` passes; `lab down`
stops that controller and removes everything. The demo's default (the live controller) is
tests/test_demo.py; the render path, one flag away, is run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import lab_leftovers, lab_name
from test_app_lab import Live

from ovsflow.lab import lab as labmod
from ovsflow.lab.exercise import Exercise

pytestmark = pytest.mark.ovs

ROOT = Path(__file__).resolve().parent.parent
SEED003 = ROOT / "labs" / "03-seed003" / "topology.yaml"


def ovsflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", *args], capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        return b"ovsflow.app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_lab_up_with_the_controller_holds_the_render_and_down_stops_it(lab_base: Path, tmp_path: Path) -> None:
    name = lab_name("lc")
    topo = tmp_path / "topology.yaml"
    topo.write_text(SEED003.read_text())
    pid = 0
    try:
        up = ovsflow("lab", "up", str(topo), "--controller", "--name", name)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr
        assert "controller: all 6 switches in sync" in up.stdout, up.stdout[-2000:]
        state = labmod.load_state(name)
        assert state is not None and state.underlay["controller"] == "tcp:192.0.2.254:6653"
        pid = int(state.underlay["controller_pid"])
        assert alive(pid), "the controller must outlive `lab up`"
        assert f"controller ryu-manager ovsflow.app on tcp:192.0.2.254:6653 (pid {pid}" in up.stdout
        log = Path(state.underlay["controller_log"]).read_text()
        assert log.count(") connect: updated,") == 6, log[-2000:]
        for host, info in state.hosts.items():  # the bridges point at it, through OVSDB
            inst = labmod.host_ovs(state, host)
            for bridge in (info["bridge_int"], info["bridge_tun"]):
                assert inst.vsctl("get-controller", bridge).split() == ["tcp:192.0.2.254:6653"]
        live = Live(Exercise(state, echo=print), None, topo, tmp_path)  # type: ignore[arg-type]
        diffs = [d for h in sorted(state.hosts) for d in live.differences(h)]
        assert diffs == [], diffs
        status = ovsflow("lab", "status", "--name", name)
        assert f"controller tcp:192.0.2.254:6653 pid {pid} running" in status.stdout, status.stdout
        check = ovsflow("lab", "check", "--name", name)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "0 violations" in check.stdout
        down = ovsflow("lab", "down", "--name", name)
        assert down.returncode == 0 and f"lab {name}: controller stopped" in down.stdout, down.stdout + down.stderr
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
        assert lab_leftovers(name, lab_base) == {"netns": [], "ovs": [], "dir": []}
    finally:
        if pid and alive(pid):
            os.kill(pid, 9)
        labmod.down(name)


def test_demo_render_path_still_passes(lab_base: Path) -> None:
    name = lab_name("dr")
    proc = ovsflow("demo", "--render", "--name", name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "(programmed by rendered scripts)" in proc.stdout and "what ryu-manager" not in proc.stdout
    assert "30 pairs (12 same-network, 18 cross-network), 0 violations" in proc.stdout
    assert "== demo passed" in proc.stdout
    assert lab_leftovers(name, lab_base) == {"netns": [], "ovs": [], "dir": []}
