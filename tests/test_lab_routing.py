"""Routers in real labs: packets through labs/07-cross-subnet, and the live controller with routers.

Part 1 brings up lab 07 (rendered scripts): r1 centralized on hv3 over web-c (VNI 5000) and db-c
(6000), r2 distributed over web-d (5001) and db-d (6001), r3 over `other`, web's subnet again. The
captures and pings are the lab check's own helpers (labs/07-cross-subnet/check.py).

Part 2 runs `ryu-manager ovsflow.app` against another lab with routers (ROUTED below) using the
live-controller helpers of tests/test_app_lab.py: the switches equal the render, adding a network to
a router sends flow-mods to exactly the hosts whose program changes, and a VM being pinged across
the router moves to another host and back (the gap is printed; bounded here, goal in bench/).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import pytest
from conftest import lab_check_module, lab_name, running_lab
from test_app_lab import Live, apply_edit, assert_programmed_like_the_render, live_lab

from ovsflow.compiler import compile_host
from ovsflow.lab.check import format_matrix, run_check
from ovsflow.lab.exercise import Exercise, ping_gap, ping_replies
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

LAB = Path(__file__).resolve().parent.parent / "labs" / "07-cross-subnet"
NAME = lab_name("rt")
LIVE_NAME = lab_name("rc")
HV = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}


def lab_module():
    return lab_check_module(LAB)


@pytest.fixture(scope="module")
def lab(lab_base: Path):
    with running_lab(LAB, NAME) as exercise:
        yield exercise


# -- part 1: real packets through lab 07 -----------------------------------------------------------
@pytest.mark.parametrize("src,dst", [("vm1", "vm2"), ("vm2", "vm1"), ("vm1", "vm3"), ("vm3", "vm1"),
                                     ("vm4", "vm5"), ("vm5", "vm4"), ("vm4", "vm6"), ("vm6", "vm4")])
def test_routed_ping_replies_arrive_with_ttl_63(lab: Exercise, src: str, dst: str) -> None:
    lab.ping(src, dst, count=2)  # warm-up: the first packet may meet unresolved underlay neighbours
    ttls = lab_module().ping_ttls(lab, src, lab.vm(dst)["ip"], count=3)
    mode = "centralized" if lab.vm(src)["network"].endswith("-c") else "distributed"
    where = "same host" if lab.vm(src)["host"] == lab.vm(dst)["host"] else "across hosts"
    print(f"\n{src} -> {dst} ({mode}, {where}): reply TTLs {ttls}")
    assert ttls == [63, 63, 63]


def test_gateway_arp_and_ping_answered_and_never_on_the_underlay(lab: Exercise) -> None:
    check = lab_module()
    macs, ports = check.router_macs(lab), ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6", "vm7", "vm8"]
    answers, packets = check.gateway_exchange(lab, ports)
    print(f"\ngateway ARP + ping from 8 VMs, then a control ping: {len(packets)} tunnel frames on the underlay")
    for port in ports:
        assert answers[port] == (macs[lab.vm(port)["network"]], [64, 64]), (port, answers[port])
    gws = set(check.gateways(lab).values())
    about_gateway = [p for p in packets if any(re.search(rf"{re.escape(g)}(?![.\d])", p.inner) for g in gws)]
    assert about_gateway == [], [p.inner for p in about_gateway]
    # (other ARP may cross: a neighbour's unicast reachability probe in a learn network is ordinary L2)
    # the capture was listening: the control ping's two request legs (VNI 5000 then 6000) are there
    assert sorted(p.key for p in check.echo(packets, "request")) == [5000, 6000]
    assert answers["control"][1] == [63]


@pytest.mark.parametrize("dst", ["vm2", "vm3"])
def test_centralized_two_legs_through_the_router_host(lab: Exercise, dst: str) -> None:
    check = lab_module()
    macs = check.router_macs(lab)
    ttls, packets = check.routed_capture(lab, "vm1", dst)
    req = check.echo(packets, "request")
    print(f"\nvm1 -> {dst} (centralized): reply TTL {ttls}; request legs: " + "; ".join(check.leg(p) for p in req))
    assert ttls == [63]
    dst_host = HV[lab.vm(dst)["host"]]
    assert [(p.key, p.outer_src, p.outer_dst) for p in sorted(req, key=lambda p: p.key)] == [
        (5000, HV["hv1"], HV["hv3"]), (6000, HV["hv3"], dst_host)]
    first, second = sorted(req, key=lambda p: p.key)
    assert (first.inner_src_mac, first.inner_dst_mac, first.inner_ttl) == (lab.vm("vm1")["mac"], macs["web-c"], 64)
    assert (second.inner_src_mac, second.inner_dst_mac, second.inner_ttl) == (macs["db-c"], lab.vm(dst)["mac"], 63)
    rep = check.echo(packets, "reply")
    assert [(p.key, p.outer_src, p.outer_dst) for p in sorted(rep, key=lambda p: -p.key)] == [
        (6000, dst_host, HV["hv3"]), (5000, HV["hv3"], HV["hv1"])]


def test_distributed_one_leg_with_the_destination_vni(lab: Exercise) -> None:
    check = lab_module()
    macs = check.router_macs(lab)
    ttls, packets = check.routed_capture(lab, "vm4", "vm5")
    req, rep = check.echo(packets, "request"), check.echo(packets, "reply")
    print(f"\nvm4 -> vm5 (distributed): reply TTL {ttls}; legs: " + "; ".join(check.leg(p) for p in req + rep))
    assert ttls == [63]
    assert [(p.key, p.outer_src, p.outer_dst, p.inner_src_mac, p.inner_dst_mac, p.inner_ttl) for p in req] == [
        (6001, HV["hv1"], HV["hv2"], macs["db-d"], lab.vm("vm5")["mac"], 63)]
    assert [(p.key, p.outer_src, p.outer_dst, p.inner_src_mac, p.inner_ttl) for p in rep] == [
        (5001, HV["hv2"], HV["hv1"], macs["web-d"], 63)]
    # on one host: routed inside br-int, nothing on the underlay
    ttls, packets = check.routed_capture(lab, "vm4", "vm6")
    assert ttls == [63] and check.echo(packets, "request") == []


def test_third_network_with_the_same_subnet_is_unreachable_and_receives_nothing(lab: Exercise) -> None:
    other = lab_module().pings_into_other_tenant(lab)
    print(f"\npings into `other` (r3): replies {other['replies']}; "
          f"frames heard inside vm7/vm8: {[len(v) for v in other['heard'].values()]}")
    assert other["replies"]["vm2->vm8"] == [] and other["replies"]["vm5->vm8"] == []
    # vm7's address is vm1's and vm4's too: their routers deliver it to them, never to vm7
    assert other["replies"]["vm2->vm7"] == [63, 63] and other["replies"]["vm5->vm7"] == [63, 63]
    assert other["heard"] == {"vm7": [], "vm8": []}
    # the listeners do hear what is theirs (they are not deaf): vm8 pings vm7
    heard = lab_module().vm_capture(lab, ("vm7",), lambda: lab.ping("vm8", "vm7", count=1))
    assert any("ICMP echo request" in ln for ln in heard["vm7"]), heard


def test_no_learned_entry_holds_a_router_mac(lab: Exercise) -> None:
    check = lab_module()
    pairs = (("vm1", "vm2"), ("vm2", "vm1"), ("vm3", "vm1"), ("vm4", "vm5"), ("vm5", "vm4"), ("vm6", "vm5"),
             ("vm2", "vm3"))  # the last one switched (db-c, hv2 <-> hv1): learn() is at work
    hits0 = no_learn_hits(lab)
    for src, dst in pairs:
        assert lab.ping(src, dst, count=2), (src, dst)
    hits = {h: n - hits0[h] for h, n in no_learn_hits(lab).items()}
    learned = {h: lab.ovs(h).dump_flows(i["bridge_tun"], check.LEARNED) for h, i in lab.state.hosts.items()}
    print(f"\nafter routed traffic from every host: learned entries {dict((h, len(v)) for h, v in learned.items())}, "
          f"frames from a router MAC passed by br-tun's learn table without learn() {hits}")
    assert check.learned_router_macs(lab) == []
    assert any(lab.vm("vm2")["mac"] in f for f in learned["hv1"])  # learn() did learn the switched frames
    # routed frames reached the learn table of the receiving hosts, from hv3 (r1) and hv1/hv2 (r2)
    assert hits["hv1"] > 0 and hits["hv2"] > 0, hits


def no_learn_hits(lab: Exercise) -> dict[str, int]:
    """Per host: frames br-tun's learn table (10) delivered without learn() because their source
    is a router MAC (the flows matching dl_src=<router MAC>)."""
    macs = set(lab_module().router_macs(lab).values())
    out = {}
    for h, info in lab.state.hosts.items():
        flows = lab.ovs(h).dump_flows(info["bridge_tun"], "table=10", stats=True)
        out[h] = sum(int(m.group(1)) for f in flows if any(f"dl_src={mac}" in f for mac in macs)
                     and (m := re.search(r"n_packets=(\d+)", f)))
    return out


def test_connectivity_matrix_and_lab_check(lab: Exercise) -> None:
    matrix = run_check(lab.state)
    print("\n" + format_matrix(matrix, lab.state.vms))
    assert matrix.ok
    routed = sorted((r.src, r.dst) for r in matrix.pairs.values() if r.routed)
    assert routed == sorted([(a, b) for a, b in [("vm1", "vm2"), ("vm1", "vm3"), ("vm4", "vm5"), ("vm4", "vm6")]]
                            + [(b, a) for a, b in [("vm1", "vm2"), ("vm1", "vm3"), ("vm4", "vm5"), ("vm4", "vm6")]])
    lines: list[str] = []
    ex = Exercise(lab.state, echo=lines.append)
    lab_module().check(ex)
    print("\n".join(lines))
    assert len(ex.results) >= 20 and not ex.failures, "\n".join(lines)


# -- part 2: the live controller with routers ------------------------------------------------------
ROUTED = """\
hosts:
  hv1: {vtep: 192.0.2.11}
  hv2: {vtep: 192.0.2.12}
  hv3: {vtep: 192.0.2.13}
networks:
  web: {vni: 5000, subnet: 198.51.100.0/26,   gateway: 198.51.100.1}
  db:  {vni: 6000, subnet: 198.51.100.64/26,  gateway: 198.51.100.65, mode: l2pop}
  app: {vni: 7000, subnet: 198.51.100.128/26, gateway: 198.51.100.129}
  ops: {vni: 8000, subnet: 203.0.113.0/26,    gateway: 203.0.113.1}
  mgt: {vni: 8001, subnet: 203.0.113.64/26,   gateway: 203.0.113.65}
routers:
  r1: {networks: [web, db]}
  r2: {networks: [ops, mgt], mode: centralized, host: hv3}
ports:
  w1: {host: hv1, network: web, mac: "02:00:00:00:50:01", ip: 198.51.100.10}
  d1: {host: hv2, network: db,  mac: "02:00:00:00:60:01", ip: 198.51.100.70}
  d2: {host: hv2, network: db,  mac: "02:00:00:00:60:02", ip: 198.51.100.71}
  a1: {host: hv1, network: app, mac: "02:00:00:00:70:01", ip: 198.51.100.130}
  a2: {host: hv2, network: app, mac: "02:00:00:00:70:02", ip: 198.51.100.131}
  o1: {host: hv2, network: ops, mac: "02:00:00:00:80:01", ip: 203.0.113.10}
  o2: {host: hv3, network: ops, mac: "02:00:00:00:80:02", ip: 203.0.113.11}
  m1: {host: hv3, network: mgt, mac: "02:00:00:00:81:01", ip: 203.0.113.70}
"""
MOVES = 4  # d1 hv2 -> hv1 -> hv2, twice
GAP_BOUND_S = 1.0  # asserted; the goal (0.2 s, as for L2 moves) is measured by the benchmarks


@pytest.fixture(scope="module")
def live(lab_base: Path, tmp_path_factory: pytest.TempPathFactory):
    with live_lab(ROUTED, LIVE_NAME, tmp_path_factory.mktemp("routedapp")) as running:
        yield running


def test_the_app_programs_routers_equal_to_the_render(live: Live) -> None:
    assert_programmed_like_the_render(live)
    int_flows = live.lab.ovs("hv3").dump_flows("br-int", "table=12")
    assert any("dec_ttl" in f for f in int_flows) and any("nw_ttl=1" in f for f in int_flows), int_flows
    ttls = lab_module().ping_ttls(live.lab, "o1", live.lab.vm("m1")["ip"])  # centralized, routed on hv3
    assert ttls and set(ttls) == {63}, ttls
    assert lab_module().ping_ttls(live.lab, "w1", live.lab.vm("d1")["ip"]) == [63, 63, 63]  # distributed
    live.check()


def test_adding_a_network_to_a_router_touches_only_its_hosts(live: Live) -> None:
    original = live.topology.read_text()
    added = original.replace("r1: {networks: [web, db]}", "r1: {networks: [web, db, app]}")
    assert added != original
    assert not lab_module().ping_ttls(live.lab, "w1", live.lab.vm("a1")["ip"], count=1)  # not routed yet
    apply_edit(live, added, "add app to router r1")  # hv1, hv2 get flow-mods; hv3 none (asserted)
    for src, dst in (("w1", "a1"), ("a1", "w1"), ("a2", "d2"), ("w1", "a2")):
        assert lab_module().ping_ttls(live.lab, src, live.lab.vm(dst)["ip"], count=2) == [63, 63], (src, dst)
    apply_edit(live, original, "remove app from router r1")
    assert not lab_module().ping_ttls(live.lab, "w1", live.lab.vm("a1")["ip"], count=1)


def move_pinged(live: Live, port: str, dst: str, pinger: str, out: Path) -> tuple[float, int]:
    """Move `port` to `dst` (re-plug, then the topology file edited for the app) while `pinger`, in
    another network of the router, pings it every 10 ms: (longest silence, replies after the move)."""
    lab, mig = live.lab, lab_check_module(LAB.parent / "06-migration")
    text = live.topology.read_text()
    moved = re.sub(rf"^(  {port}: \{{host: )hv\d", rf"\g<1>{dst}", text, flags=re.M)
    path = live.tmp / "moved.yaml"
    path.write_text(moved)
    ofport = compile_host(load_topology(path), dst).bridge("int").port(lab.vm(port)["iface"]).ofport
    ping = lab.start_ping(pinger, lab.vm(port)["ip"], out, interval=0.01)
    try:
        time.sleep(0.5)
        lab.replug(port, dst, ofport)
        mig.set_host_in_file(str(live.topology), port, dst)
        live.wait_equal_render(live.hosts, time.monotonic())
        done = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(t > done for t, _ in ping_replies(out.read_text())):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        lab.stop_ping(ping)
    text = out.read_text()
    return ping_gap(text) or float("inf"), sum(1 for t, _ in ping_replies(text) if t > done)


def test_a_vm_pinged_across_the_router_moves_and_the_pings_resume(live: Live, tmp_path: Path) -> None:
    gaps = []
    for i, dst in enumerate(["hv1", "hv2"] * (MOVES // 2)):
        gap, after = move_pinged(live, "d1", dst, "w1", tmp_path / f"ping-{i}.txt")
        print(f"\nd1 -> {dst} pinged by w1 (web -> db, routed every 10 ms): gap {gap * 1000:.0f} ms, {after} replies after")
        assert after > 0, f"the routed ping did not resume after moving d1 to {dst}"
        gaps.append(gap)
    print(f"routed ping gaps over {MOVES} moves: {', '.join(f'{g * 1000:.0f}' for g in gaps)} ms, "
          f"median {statistics.median(gaps) * 1000:.0f} ms (goal < 200 ms as for L2)")
    assert max(gaps) < GAP_BOUND_S, gaps
    assert live.lab.vm("d1")["host"] == "hv2"
    assert lab_module().ping_ttls(live.lab, "w1", live.lab.vm("d1")["ip"]) == [63, 63, 63]
    live.check()
