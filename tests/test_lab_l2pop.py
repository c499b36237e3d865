"""Issue 5 in the lab (labs/05-l2pop): L2 population keeps ARP off the underlay, flood-and-learn does not.

One lab for the module (3 hosts; blue = l2pop over VXLAN, red = learn over GRE). The exchange is the
lab check's own (`exchange()` in labs/05-l2pop/check.py): cold caches, then one underlay capture
while vm1 (blue) pings vm2 and arpings vm3 and vm4 (red) pings vm5. Because blue and red share the
capture, the red ARP frames it holds prove the capture could see ARP when blue shows none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import lab_check_module, lab_name, running_lab

from ovsflow.lab.exercise import Exercise

pytestmark = pytest.mark.ovs

LAB = Path(__file__).resolve().parent.parent / "labs" / "05-l2pop"
NAME = lab_name("l2")
HV = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}
BROADCAST = "ff:ff:ff:ff:ff:ff"


def lab_module():
    return lab_check_module(LAB)


@pytest.fixture(scope="module")
def lab(lab_base: Path):
    with running_lab(LAB, NAME) as exercise:
        yield exercise


@pytest.fixture(scope="module")
def exchange(lab):
    return lab_module().exchange(lab)


def test_l2pop_arp_answered_with_zero_arp_on_the_underlay(lab, exchange) -> None:
    blue = exchange.on("vxlan", 101)
    arp = exchange.arp("vxlan", 101)
    print(f"\nblue (l2pop, vni 101): {len(blue)} tunnel frames during the exchange, {len(arp)} of them ARP; "
          f"hv1's table 21 answered {exchange.responder_hits} requests")
    assert exchange.neighbour["vm1->vm2"] == lab.vm("vm2")["mac"], exchange.neighbour
    assert exchange.arping["vm1->vm3"] == lab.vm("vm3")["mac"], exchange.arping
    assert exchange.pings["vm1->vm2"] is True
    assert arp == [], [p.inner for p in arp]
    # the capture saw blue: its echo request and reply, hv1 <-> hv2, in vni 101
    assert {(p.outer_src, p.outer_dst) for p in blue} == {(HV["hv1"], HV["hv2"]), (HV["hv2"], HV["hv1"])}
    assert any("echo request" in p.inner for p in blue) and any("echo reply" in p.inner for p in blue)
    assert exchange.responder_hits >= 2  # vm1's kernel ARP for vm2 + arping's request for vm3


def test_learn_mode_floods_arp_in_the_same_capture(lab, exchange) -> None:
    arp = exchange.arp("gre", 102)
    requests = [p for p in arp if p.inner_dst_mac == BROADCAST and p.inner_src_mac == lab.vm("vm4")["mac"]]
    print(f"\nred (learn, GRE key 102): {len(arp)} ARP frames on the underlay, {len(requests)} of them "
          f"vm4's broadcast request, to {sorted(p.outer_dst for p in requests)}")
    assert sorted(p.outer_dst for p in requests) == [HV["hv2"], HV["hv3"]]  # one copy per other red VTEP
    assert all(p.outer_src == HV["hv1"] for p in requests)
    assert any(p.inner_src_mac == lab.vm("vm5")["mac"] and (p.outer_src, p.outer_dst) == (HV["hv2"], HV["hv1"])
               for p in arp), "vm5's ARP reply did not cross back to hv1"
    assert exchange.pings["vm4->vm5"] is True
    assert exchange.neighbour["vm4->vm5"] == lab.vm("vm5")["mac"]


def test_unknown_ip_in_l2pop_network_still_floods(lab) -> None:
    frames = lab_module().flood_unknown(lab)
    blue = [p for p in frames if p.kind == "vxlan" and p.key == 101]
    assert sorted(p.outer_dst for p in blue) == [HV["hv2"], HV["hv3"]]
    assert all(p.inner_dst_mac == BROADCAST for p in blue)


def test_every_blue_pair_pings(lab) -> None:
    blue = ("vm1", "vm2", "vm3")
    results = {(a, b): lab.ping(a, b, count=2) for a in blue for b in blue if a != b}
    assert all(results.values()), results


def test_lab_check_passes(lab) -> None:
    lines: list[str] = []
    ex = Exercise(lab.state, echo=lines.append)
    lab_module().check(ex)
    print("\n".join(lines))
    assert len(ex.results) >= 10 and not ex.failures, "\n".join(lines)
