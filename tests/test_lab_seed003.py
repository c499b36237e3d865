"""End to end on the seed-003 scenario (labs/03-seed003): 3 hosts, 2 tenants (VXLAN and GRE).

One lab serves the whole module (building it is the expensive part and no test changes it in a
way another depends on); the last test takes it down and checks nothing is left.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import lab_leftovers, lab_name, root_veths

from ovsflow.lab import lab as labmod
from ovsflow.lab.capture import capture_during, parse_tunnel_packets
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

TOPOLOGY = Path(__file__).resolve().parent.parent / "labs" / "03-seed003" / "topology.yaml"
NAME = lab_name("s3")


@pytest.fixture(scope="module")
def seed003(lab_base: Path):
    before = {"veths": root_veths(), "left": lab_leftovers(NAME, lab_base)}
    t = time.monotonic()
    state = labmod.up(load_topology(TOPOLOGY), NAME)
    up_s = time.monotonic() - t
    try:
        yield {"state": state, "before": before, "base": lab_base, "up_s": up_s}
    finally:
        labmod.down(NAME)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsflow.lab.cli", *args], capture_output=True, text=True, timeout=120)


def test_up_builds_every_namespace_and_ovs(seed003) -> None:
    state = seed003["state"]
    print(f"lab up (3 hosts x 2 tenants): {seed003['up_s']:.2f}s, timings {state.timings}")
    assert state.status == "up"
    st = labmod.status(NAME)
    assert sorted(st["hosts"]) == ["hv1", "hv2", "hv3"]
    assert all(h["ovs_running"] and h["netns_alive"] for h in st["hosts"].values())
    assert sorted(st["vms"]) == [f"vm{i}" for i in range(1, 7)]
    for host in st["hosts"]:
        ovs = labmod.host_ovs(state, host)
        assert ovs.vsctl("get", "bridge", "br-tun", "datapath_type").strip() == "netdev"
        assert "192.0.2." in ovs.appctl("ovs/route/show")


def test_check_cli_passes_and_prints_matrix(seed003) -> None:
    proc = cli("check", "--name", NAME, str(TOPOLOGY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "30 pairs (12 same-network, 18 cross-network), 0 violations" in proc.stdout
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("vm")]
    assert len(rows) == 6 and all(("ok" in r) and ("iso" in r) for r in rows)


def test_cross_tenant_pings_fail(seed003) -> None:
    state = seed003["state"]
    blue, red = ("vm1", "vm2", "vm3"), ("vm4", "vm5", "vm6")
    assert labmod.ping(state, "vm1", state.vms["vm2"]["ip"])  # the control: same tenant works
    for a, b in (("vm1", "vm5"), ("vm4", "vm2"), ("vm3", "vm4"), ("vm6", "vm1")):
        assert labmod.ping(state, a, state.vms[b]["ip"], count=2) is False, f"{a} reached {b}"
    assert set(blue).isdisjoint(red)


def test_underlay_shows_vni_for_vxlan_and_key_for_gre(seed003) -> None:
    state = seed003["state"]
    oks: list[bool] = []

    def traffic() -> None:
        oks.append(labmod.ping(state, "vm1", state.vms["vm3"]["ip"], 2))  # blue, hv1 -> hv3
        oks.append(labmod.ping(state, "vm5", state.vms["vm6"]["ip"], 2))  # red, hv2 -> hv3

    text = capture_during(state, traffic)
    packets = parse_tunnel_packets(text)
    assert oks == [True, True]
    vxlan = [p for p in packets if p.kind == "vxlan"]
    gre = [p for p in packets if p.kind == "gre"]
    assert vxlan and gre, text
    assert "4789" in text and "VXLAN" in text and "GREv0" in text
    assert {p.key for p in vxlan} == {101}
    assert {p.key for p in gre} == {102}
    blue = {state.vms[p]["mac"] for p in ("vm1", "vm2", "vm3")}
    red = {state.vms[p]["mac"] for p in ("vm4", "vm5", "vm6")}
    assert {p.inner_src_mac for p in vxlan} <= blue
    assert {p.inner_src_mac for p in gre} <= red
    # blue's echo requests go hv1 -> hv3, red's hv2 -> hv3: right VTEPs too
    assert {(p.outer_src, p.outer_dst) for p in vxlan if "echo request" in p.inner} == {("192.0.2.11", "192.0.2.13")}
    assert {(p.outer_src, p.outer_dst) for p in gre if "echo request" in p.inner} == {("192.0.2.12", "192.0.2.13")}


def test_down_leaves_nothing(seed003) -> None:
    base = seed003["base"]
    t = time.monotonic()
    assert labmod.down(NAME) is True
    down_s = time.monotonic() - t
    print(f"lab down (3 hosts x 2 tenants): {down_s:.2f}s")
    deadline = time.monotonic() + 5
    left = lab_leftovers(NAME, base)
    while left["ovs"] and time.monotonic() < deadline:  # exiting daemons linger a moment
        time.sleep(0.1)
        left = lab_leftovers(NAME, base)
    assert left == seed003["before"]["left"] == {"netns": [], "ovs": [], "dir": []}
    assert root_veths() == seed003["before"]["veths"]
    assert labmod.down(NAME) is False  # idempotent: nothing left to remove
    assert labmod.status(NAME)["status"] == "absent"
