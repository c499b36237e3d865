"""Lab life cycle: a `lab up` killed half-way is cleaned up by the next one; down is idempotent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lab_leftovers, lab_name, root_veths

from ovsflow.lab import lab as labmod
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

TOPOLOGY = Path(__file__).resolve().parent.parent / "labs" / "01-vxlan-on-the-wire" / "topology.yaml"


def test_up_after_killed_up_works(lab_base: Path) -> None:
    name = lab_name("k")
    veths = root_veths()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovsflow.lab.cli", "up", str(TOPOLOGY), "--name", name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # kill it once both hosts' OVS run and VMs are being made
            seen.append(line)
            if line.strip().startswith("vm vm1"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "".join(seen)
        crashed = labmod.load_state(name)
        assert crashed is not None and crashed.status == "building"
        assert lab_leftovers(name, lab_base)["netns"], "the killed run should have left namespaces"
        assert lab_leftovers(name, lab_base)["ovs"], "... and OVS daemons"

        state = labmod.up(load_topology(TOPOLOGY), name)  # cleans up, then builds afresh
        assert state.status == "up"
        assert labmod.ping(state, "vm1", state.vms["vm2"]["ip"])
        assert sorted(labmod.status(name)["vms"]) == ["vm1", "vm2"]
    finally:
        if proc.poll() is None:
            proc.kill()
        labmod.down(name)
    left = lab_leftovers(name, lab_base)
    assert left["netns"] == [] and left["dir"] == []
    assert root_veths() == veths
    assert labmod.down(name) is False


def test_down_after_state_only_partially_real(lab_base: Path) -> None:
    """A state file naming things that never came to be (kill right after recording) is no error."""
    from ovsflow.lab.state import LabState

    name = lab_name("p")
    st = LabState(name=name, workdir=str(lab_base / name))
    st.netns = [f"{name}-never"]
    st.ovs = [{"host": "hvx", "workdir": str(lab_base / name / "hvx"), "netns": f"{name}-never"}]
    st.save()
    assert labmod.down(name) is True
    assert lab_leftovers(name, lab_base) == {"netns": [], "ovs": [], "dir": []}
