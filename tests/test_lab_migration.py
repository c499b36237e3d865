"""Issue 5 in the lab (labs/06-migration): VM moves applied by the live controller, ping every 10 ms.

The lab comes up with `program="none"` (no flows); the hosts' OVSDB side is plumbed (bridges,
ports, tunnels, controller target — `Exercise.plumb`) and a real `ryu-manager ovsflow.app`, running in
the lab's underlay namespace on 192.0.2.254 (the hosts reach it over their VTEP links), programs
all six bridges. Every move then is: the VM re-plugged into the new host, the topology file (a copy
in the test's temp dir) edited on disk, the app reloading it by itself. The test asserts that the
ping resumes after every move, that the app pushed updates, and that the lab check passes; it
prints the ping gaps (no timing goal is asserted here: that belongs to the benchmarks).
"""

from __future__ import annotations

import re
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import lab_check_module, lab_name

from ovsflow.lab.check import run_check
from ovsflow.lab.controller import controlled_lab
from ovsflow.lab.exercise import Exercise
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

LAB = Path(__file__).resolve().parent.parent / "labs" / "06-migration"
NAME = lab_name("mv")
CTL_IP = "192.0.2.254"  # the controller's address on the lab's underlay (no VTEP uses it)
CTL_PORT = 6653


def lab_module():
    return lab_check_module(LAB)


@pytest.fixture(scope="module")
def live(lab_base: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("migration")
    topo_file = tmp / "topology.yaml"
    shutil.copy(LAB / "topology.yaml", topo_file)  # the app watches this copy; the test edits it
    with controlled_lab(topo_file, NAME, tmp / "ryu.log", ctl_ip=CTL_IP, ctl_port=CTL_PORT) as (lab, ctl):
        yield {"lab": lab, "ctl": ctl, "topology": topo_file}


def test_the_app_programs_the_whole_lab(live) -> None:
    lab, ctl = live["lab"], live["ctl"]
    assert len(ctl.wait_for(r"\(hv\d/br-(?:int|tun)\) connect: updated")) == 6
    matrix = run_check(lab.state)
    bad = [f"{r.src}->{r.dst}: {r.violations}" for r in matrix.pairs.values() if not r.ok]
    assert not bad, bad


def report(results, title: str) -> float:
    gaps = [r.gap_s for r in results]
    med = statistics.median(gaps)
    print(f"\n{title}: {len(results)} moves, ping gaps {', '.join(f'{g * 1000:.0f}' for g in gaps)} ms "
          f"(median {med * 1000:.0f} ms); re-plug median {statistics.median(r.replug_s for r in results) * 1000:.0f} ms, "
          f"program seen median {statistics.median(r.program_s for r in results) * 1000:.0f} ms after the re-plug started")
    for r in results:
        print(f"  {r}")
    return med


@pytest.mark.parametrize("port,mode,changed", [("vm2", "l2pop", {"hv1", "hv2", "hv3"}), ("vm5", "learn", {"hv2", "hv3"})])
def test_moves_by_the_live_controller_resume_the_ping(live, tmp_path: Path, port: str, mode: str, changed: set) -> None:
    lab, ctl = live["lab"], live["ctl"]
    check = lab_module()
    before = len(re.findall(r"loaded \(file change\)", ctl.text()))
    hv1_before = len(re.findall(r"\(hv1/br-\w+\) file change", ctl.text()))
    results = check.move_and_back(lab, port, tmp_path, rounds=2)
    report(results, f"{port} ({mode}) moved hv2 <-> hv3 by the live controller")
    assert [r.how for r in results] == ["controller"] * 4
    assert all(r.mode == mode for r in results)
    for r in results:
        assert r.replies_after > 0, f"the ping did not resume after {r}"
        assert r.gap_s != float("inf")
        assert set(r.changed) == changed, r
    assert lab.vm(port)["host"] == "hv2"  # back home
    # the app saw each edit of the file and pushed to the switches of the affected hosts only
    ctl.wait_for(r"loaded \(file change\)", count=before + 4)
    hv1_lines = re.findall(r"\(hv1/br-\w+\) file change: .*", ctl.text())[hv1_before:]
    hv1_pushes = len(hv1_lines)
    print(f"  updates the app pushed to hv1 (the pinger's host) during these moves: {hv1_pushes}")
    if mode == "learn":
        # nothing in hv1's program says where vm5 is: its br-tun only replaces what learn() knew
        # (the learned entry deleted, a hint to the new VTEP added, both with learn()'s cookie)
        assert hv1_pushes == 4 and all(
            "(hv1/br-tun) file change: updated, added=0 modified=0 deleted=0 " in ln and " forgot=1 hinted=1 flows=" in ln
            for ln in hv1_lines), hv1_lines
    else:
        assert hv1_pushes >= 4  # its table-20 entry for vm2 follows every move
    assert lab.ping("vm1", "vm2") and lab.ping("vm4", "vm5")


def test_lab_check_passes_with_the_live_controller(live) -> None:
    lines: list[str] = []
    ex = Exercise(live["lab"].state, echo=lines.append)
    results = lab_module().check(ex)
    print("\n".join(lines))
    assert not ex.failures, "\n".join(lines)
    assert results and all(r.how == "controller" for r in results)
    assert "hv2" in Path(live["topology"]).read_text()  # the file is back to its starting content
    assert load_topology(live["topology"]).ports["vm2"].host == "hv2"
