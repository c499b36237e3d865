"""The live controller as operators run it: the literal `ryu-manager ovsflow.app`, real OVS.

- it starts (Ryu 4.34 on this Python: the install's .pth hook) and speaks OpenFlow on its port;
- connected to a private OVS whose br-int/br-tun point at it (fail_mode secure), it programs both
  bridges with exactly the flows `ovsflow render` would load;
- restarted, it reads the switches back and sends zero flow-mods (an independent OpenFlow flow
  monitor on the switch sees no change); stale ovsflow flows are deleted, learned flows and flows
  of other cookies kept.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from ovsflow.compiler import compile_host
from ovsflow.lab.controller import RyuManager, free_port
from ovsflow.model import load_topology
from ovsflow.ofctl import flow_file
from ovsflow.program import COOKIE_LEARNED, COOKIE_STATIC, OPENFLOW_VERSIONS

DATA = Path(__file__).parent / "data"


@pytest.fixture
def controller_factory(tmp_path: Path):
    made: list[RyuManager] = []

    def make(port: int, topology: Path | None, netns: str | None = None, env: dict[str, str] | None = None,
             args: tuple[str, ...] = ()) -> RyuManager:
        c = RyuManager(tmp_path / "ryu.log", topology, port=port, netns=netns, env=env, args=args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def test_ryu_manager_starts_and_speaks_openflow(controller_factory) -> None:
    port = free_port()
    c = controller_factory(port, DATA / "seed003-vxlan.yaml").start()
    c.wait_for(r"topology \S+ loaded \(start\): 3 hosts, 6 bridges")
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline or c.proc.poll() is not None:
                raise AssertionError(f"nothing listens on {port}:\n{c.text()[-2000:]}") from None
            time.sleep(0.1)
    with sock:
        sock.sendall(struct.pack("!BBHI", 5, 0, 8, 1))  # OFPT_HELLO, OpenFlow 1.4
        version, msg_type = struct.unpack("!BB", sock.recv(8)[:2])
    assert msg_type == 0 and version in (4, 5)  # a hello back, OF1.3/1.4 (the app's versions)
    assert "ALREADY_HANDLED" not in c.text() and "Traceback" not in c.text()


def test_invalid_topology_is_one_clear_line(controller_factory, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: {hv1: {vtep: 192.0.2.11}}\nnetworks: {blue: {vni: 0}}\nports: {}\n")
    c = controller_factory(free_port(), None, env={"OVSFLOW_TOPOLOGY": str(bad)}).start()
    (m,) = c.wait_for(r"ovsflow: topology .* rejected \(start\).*\n")
    assert "networks.blue.vni" in m.group(0)


def test_file_changes_are_seen_without_polling(controller_factory, tmp_path: Path) -> None:
    """With polling off, inotify alone reloads: a file rewritten in place (closed after writing)
    and one renamed into place, as editors and config tools do."""
    topo_file = tmp_path / "topology.yaml"
    original = (DATA / "seed003-vxlan.yaml").read_text()
    topo_file.write_text(original)
    c = controller_factory(free_port(), topo_file, args=("--ovsflow-poll-interval", "0")).start()
    c.wait_for(r"topology \S+ loaded \(start\)")
    topo_file.write_text(original.replace("hv3: {vtep: 192.0.2.13}", "hv3: {vtep: 192.0.2.23}"))
    c.wait_for(r"topology \S+ loaded \(file change\)", timeout=5)
    tmp = tmp_path / ".topology.yaml.new"
    tmp.write_text(original)
    os.replace(tmp, topo_file)
    c.wait_for(r"topology \S+ loaded \(file change\)", count=2, timeout=5)
    tmp.write_text("not: [valid")  # a file next to it: not ours, no reload
    time.sleep(0.5)
    assert len(c.wait_for(r"topology \S+ (loaded|rejected) \(file change\)", count=2)) == 2


# ------------------------------------------------------------------------------------------------
# with a real switch


def make_bridges(ovs, program, port: int, protocols: str = ",".join(OPENFLOW_VERSIONS)) -> None:
    """br-int/br-tun as render/lab create them, pointed at the controller before any flow exists."""
    for b in program.bridges:
        ovs.vsctl(
            "add-br", b.name, "--", "set", "bridge", b.name, "datapath_type=netdev", "fail_mode=secure",
            f"protocols={protocols}",
            f"other_config:datapath-id={b.datapath_id:016x}",
            "--", "--id=@c", "create", "Controller", f"target=\"tcp:127.0.0.1:{port}\"",
            "connection_mode=out-of-band", "--", "set", "bridge", b.name, "controller=@c",
        )


def assert_equals_render(ovs, program, tmp_path: Path) -> None:
    for b in program.bridges:
        f = tmp_path / f"{b.name}.flows"
        f.write_text(flow_file(b))
        out = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow14", "diff-flows", ovs.mgmt(b.name), str(f)],
            capture_output=True, text=True, env=dict(os.environ, **ovs.env),
        )
        assert out.returncode == 0, f"{b.name} differs from the render:\n{out.stdout}{out.stderr}"
        assert len(ovs.dump_flows(b.name, f"cookie={COOKIE_STATIC:#x}/-1")) == len(b.flows)


def programmed(ovs, controller_factory, tmp_path: Path, source: str, host: str = "hv1", args: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """An editable copy of tests/data/`source`, `host`'s bridges in `ovs` pointed at a started app,
    both programmed: (topology file, its original text, the host's program, the app)."""
    topo_file = tmp_path / "topology.yaml"
    original = (DATA / source).read_text()
    topo_file.write_text(original)
    program = compile_host(load_topology(topo_file), host)
    port = free_port()
    make_bridges(ovs, program, port)
    c = controller_factory(port, topo_file, netns=ovs.netns, args=args).start()
    for b in program.bridges:
        c.wait_for(rf"switch {b.datapath_id:016x} \({host}/{b.name}\) connect: updated, added={len(b.flows)} ")
    return topo_file, original, program, c


class FlowMonitor:
    """`ovs-ofctl monitor BRIDGE watch:!initial`: prints every later flow change by any connection."""

    def __init__(self, ovs, bridge: str, out: Path) -> None:
        self.out = out
        self.fh = open(out, "wb")  # noqa: SIM115 - the monitor process writes it until stop()
        self.proc = subprocess.Popen(["ovs-ofctl", "monitor", ovs.mgmt(bridge), "watch:!initial"],
                                     stdout=self.fh, stderr=subprocess.STDOUT, env=dict(os.environ, **ovs.env))

    def events(self) -> list[str]:
        return [ln for ln in self.out.read_text().splitlines() if "event=" in ln]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.fh.close()


@pytest.mark.ovs
def test_app_programs_switch_then_restart_sends_nothing(ovs, controller_factory, tmp_path: Path) -> None:
    topo_file = DATA / "seed003-vxlan.yaml"
    program = compile_host(load_topology(topo_file), "hv1")
    port = free_port()
    make_bridges(ovs, program, port)
    dpids = {b.name: f"{b.datapath_id:016x}" for b in program.bridges}

    # 1. first connect: everything is added, nothing else.
    c = controller_factory(port, topo_file, netns=ovs.netns).start()
    for name, dpid in dpids.items():
        (m,) = c.wait_for(rf"switch {dpid} \(hv1/{name}\) connect: updated, added=(\d+) modified=0 deleted=0")
        assert int(m.group(1)) == len(program.bridge("int" if name == "br-int" else "tun").flows)
    assert_equals_render(ovs, program, tmp_path)
    c.stop()

    # 2. while it is away: a stale ovsflow flow, a learned flow, a flow of someone else.
    tun = program.bridge("tun")
    ovs.ofctl("add-flow", ovs.mgmt(tun.name),
              f"cookie={COOKIE_STATIC:#x},table=22,priority=1,dl_vlan=999 actions=pop_vlan,output:5")
    ovs.ofctl("add-flow", ovs.mgmt(tun.name), f"cookie={COOKIE_LEARNED:#x},table=20,priority=1,"
              "hard_timeout=300,dl_vlan=101,dl_dst=02:00:00:00:01:02 actions=output:7")
    ovs.ofctl("add-flow", ovs.mgmt(tun.name), "cookie=0x1234,table=0,priority=50,in_port=77 actions=drop")
    c.start()
    c.wait_for(rf"switch {dpids['br-tun']} \(hv1/br-tun\) connect: updated, added=0 modified=0 deleted=1 ")
    c.wait_for(rf"switch {dpids['br-int']} \(hv1/br-int\) connect: in sync, added=0 modified=0 deleted=0 ")
    assert ovs.dump_flows(tun.name, f"cookie={COOKIE_LEARNED:#x}/-1"), "learned flow was removed"
    assert ovs.dump_flows(tun.name, "cookie=0x1234/-1"), "foreign flow was removed"
    assert not ovs.dump_flows(tun.name, "table=22,dl_vlan=999")
    c.stop()

    # 3. restart with everything right: zero flow-mods, as an independent observer on the switch sees.
    monitors = [FlowMonitor(ovs, b.name, tmp_path / f"{b.name}.monitor") for b in program.bridges]
    try:
        time.sleep(0.5)  # the monitors are connected and registered
        c.start()
        for name, dpid in dpids.items():
            (m,) = c.wait_for(rf"switch {dpid} \(hv1/{name}\) connect: in sync, added=0 modified=0 deleted=0 "
                              r".* total ([\d.]+) ms")
        time.sleep(0.5)
        assert [m.events() for m in monitors] == [[], []]
        # The observer does see changes: one flow added behind the app's back shows up.
        ovs.ofctl("add-flow", ovs.mgmt(tun.name), "cookie=0x1234,table=0,priority=51,in_port=78 actions=drop")
        deadline = time.monotonic() + 5
        while not monitors[1].events() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert monitors[1].events() and "event=ADDED" in monitors[1].events()[0]
    finally:
        for m in monitors:
            m.stop()
    for extra in ("cookie=0x1234/-1", f"cookie={COOKIE_LEARNED:#x}/-1"):  # the test's own additions
        ovs.ofctl("del-flows", ovs.mgmt(tun.name), extra)
    assert_equals_render(ovs, program, tmp_path)


@pytest.mark.ovs
def test_live_reload_file_change_invalid_edit_and_sighup(ovs, controller_factory, tmp_path: Path) -> None:
    """Edit the topology under a running app: a valid change reaches the switch as a small diff,
    an invalid one is refused in one log line and the switch keeps its flows, SIGHUP reloads."""
    topo_file, original, program, c = programmed(ovs, controller_factory, tmp_path, "seed003-vxlan.yaml")
    int_dpid = f"{program.bridge('int').datapath_id:016x}"

    # A new VM on hv1 in blue: br-int gains its flows, nothing is deleted, the render agrees.
    added = original.replace(
        "  red1:", '  blue4: {host: hv1, network: blue, mac: "02:00:00:00:00:04", ip: 198.51.100.4}\n  red1:')
    t0 = time.monotonic()
    topo_file.write_text(added)
    (m,) = c.wait_for(rf"switch {int_dpid} \(hv1/br-int\) file change: updated, added=(\d+) modified=(\d+) deleted=0 .*")
    assert int(m.group(1)) + int(m.group(2)) > 0
    # sent as the difference from what the switch confirmed on this connection: nothing read back
    assert "read 0.0 ms (0 entries, 0 decoded)" in m.group(0) and "against the program this switch confirmed" in m.group(0)
    assert time.monotonic() - t0 < 5
    new_program = compile_host(load_topology(topo_file), "hv1")
    assert_equals_render(ovs, new_program, tmp_path)

    # An invalid edit: one clear line naming the problem; flows untouched.
    before = {b.name: ovs.dump_flows(b.name) for b in new_program.bridges}
    topo_file.write_text(added.replace("vni: 102", "vni: 0"))
    (m,) = c.wait_for(r"ovsflow: topology .* rejected \(file change\).*\n")
    assert "networks.red.vni" in m.group(0) and m.group(0).count("\n") == 1
    assert {b.name: ovs.dump_flows(b.name) for b in new_program.bridges} == before

    # Back to the original, but only announced by SIGHUP (polling off would not see it).
    topo_file.write_text(original)
    c.proc.send_signal(signal.SIGHUP)
    c.wait_for(rf"switch {int_dpid} \(hv1/br-int\) (SIGHUP|file change): updated, added=0 modified=\d+ deleted=\d+ ")
    c.wait_for(r"ovsflow: topology \S+ loaded \(SIGHUP\)")  # the signal itself triggers a reload
    assert_equals_render(ovs, program, tmp_path)


@pytest.mark.ovs
def test_audit_repairs_what_changed_behind_its_back_and_hosts_are_compiled_ahead(ovs, controller_factory, tmp_path: Path) -> None:
    """Updates trust what the switch confirmed; an audit (--ovsflow-audit-interval) reads every
    switch back and repairs flows someone deleted or added with ovsflow's cookie. Hosts whose
    switches have not connected are compiled ahead, in the background."""
    _, _, program, c = programmed(ovs, controller_factory, tmp_path, "seed003-l2pop.yaml",
                                  args=("--ovsflow-audit-interval", "0.5"))
    (m,) = c.wait_for(r"compiled (\d+) hosts' networks \(\d+ flows\) ahead of their switches")
    assert int(m.group(1)) >= 2  # hv2 and hv3 never connect here: only the warm-up compiles them
    c.wait_for(r"\(hv1/br-tun\) audit: in sync, added=0 modified=0 deleted=0 ")
    tun = program.bridge("tun")
    victim = next(f for f in tun.flows if f.table == 21 and f.actions)  # an ARP responder entry
    mark = c.mark()
    ovs.ofctl("--strict", "del-flows", ovs.mgmt(tun.name), f"table=21,priority={victim.priority},{victim.match_text()}")
    ovs.ofctl("add-flow", ovs.mgmt(tun.name), f"cookie={COOKIE_STATIC:#x},table=22,priority=1,dl_vlan=999 actions=drop")
    (m,) = c.wait_for(r"\(hv1/br-tun\) audit: updated, added=1 modified=0 deleted=1 .*", since=mark)
    assert "against the switch's flows" in m.group(0)
    assert_equals_render(ovs, program, tmp_path)


@pytest.mark.ovs
def test_a_moved_vm_is_forgotten_by_learn_on_the_hosts_of_its_network(ovs, controller_factory, tmp_path: Path) -> None:
    """A VM of a learn network moved in the topology: what learn() remembered about its MAC in that
    network (and only there: seed 003 reuses MACs across tenants) is deleted with the update, and
    an entry with learn()'s cookie points at the new VTEP, above whatever learn() re-learns from
    traffic that crossed before the move."""
    topo_file, original, program, c = programmed(ovs, controller_factory, tmp_path, "seed003-vxlan.yaml")
    tun = program.bridge("tun")
    for net in ("blue", "red"):
        for mac in ("02:00:00:00:00:02", "02:00:00:00:00:03"):  # as learn() writes them
            ovs.ofctl("add-flow", ovs.mgmt(tun.name), f"cookie={COOKIE_LEARNED:#x},table=20,priority=1,hard_timeout=300,"
                      f"vlan_tci={program.local_vlans[net]:#06x}/0x0fff,dl_dst={mac} actions=output:7")
    mark = c.mark()
    moved = original.replace("red2:  {host: hv2", "red2:  {host: hv3")
    topo_file.write_text(moved)
    (m,) = c.wait_for(r"\(hv1/br-tun\) file change: updated, .*", since=mark)
    assert "forgot=1 hinted=1 " in m.group(0)
    learned = ovs.dump_flows(tun.name, f"cookie={COOKIE_LEARNED:#x}/-1")
    left = {(ln.split("vlan_tci=")[1].split(",")[0], ln.split("dl_dst=")[1].split(" ")[0]) for ln in learned if "vlan_tci=" in ln}
    red, blue = (f"{program.local_vlans[n]:#06x}/0x0fff" for n in ("red", "blue"))
    assert left == {(red, "02:00:00:00:00:03"), (blue, "02:00:00:00:00:02"), (blue, "02:00:00:00:00:03")}, left
    hv3_tunnel = compile_host(load_topology(topo_file), "hv1").bridge("tun").port("vxlan-c000020d").ofport
    [hint] = [ln for ln in learned if "vlan_tci=" not in ln]
    assert (f"priority=2,dl_vlan={program.local_vlans['red']},dl_dst=02:00:00:00:00:02 " in hint
            and "hard_timeout=300" in hint and hint.endswith(f"actions=pop_vlan,set_field:0x66->tun_id,output:{hv3_tunnel}")), hint


@pytest.mark.ovs
def test_openflow13_switch_gets_onf_bundles(ovs, controller_factory, tmp_path: Path) -> None:
    """A bridge limited to OpenFlow 1.3 is programmed through the ONF bundle extension."""
    topo_file = DATA / "seed003-gre.yaml"
    program = compile_host(load_topology(topo_file), "hv2")
    port = free_port()
    make_bridges(ovs, program, port, protocols="OpenFlow13")
    c = controller_factory(port, topo_file, netns=ovs.netns).start()
    for b in program.bridges:
        c.wait_for(rf"switch {b.datapath_id:016x} \(hv2/{b.name}\) connected from .*OpenFlow 1\.3")
        c.wait_for(rf"switch {b.datapath_id:016x} \(hv2/{b.name}\) connect: updated, added={len(b.flows)} ")
    ovs.vsctl("set", "bridge", "br-tun", "protocols=OpenFlow13,OpenFlow14")  # diff-flows speaks 1.4
    ovs.vsctl("set", "bridge", "br-int", "protocols=OpenFlow13,OpenFlow14")
    assert_equals_render(ovs, program, tmp_path)


@pytest.mark.ovs
def test_kill_9_during_a_large_update_leaves_old_or_new(ovs, controller_factory, tmp_path: Path) -> None:
    """SIGKILL the controller right after it starts sending a ~10k-flow bundle: the switch holds
    the whole program or none of it (OVS discards an uncommitted bundle), and the next
    controller completes it."""
    import json

    topo = {"hosts": {f"hv{i}": {"vtep": f"192.0.2.{10 + i}"} for i in range(1, 4)}, "networks": {}, "ports": {}}
    for n in range(20):
        topo["networks"][f"n{n}"] = {"vni": 1000 + n, "mode": "l2pop", "subnet": "10.0.0.0/16"}
        topo["ports"][f"n{n}-local"] = {"host": "hv1", "network": f"n{n}", "mac": "02:00:00:00:ff:ff",
                                        "ip": "10.0.255.254"}
        for p in range(250):
            topo["ports"][f"n{n}-p{p}"] = {"host": f"hv{2 + p % 2}", "network": f"n{n}",
                                           "mac": f"02:00:00:00:{p >> 8:02x}:{p & 255:02x}",
                                           "ip": f"10.0.1.{p + 1}" if p < 254 else f"10.0.2.{p}"}
    topo_file = tmp_path / "big.json"
    topo_file.write_text(json.dumps(topo))
    program = compile_host(load_topology(topo_file), "hv1")
    tun = program.bridge("tun")
    assert len(tun.flows) > 10_000
    port = free_port()
    make_bridges(ovs, program, port)
    c = controller_factory(port, topo_file, netns=ovs.netns).start()
    c.wait_for(r"\(hv1/br-tun\): sending bundle \d+ with \d+ changes", timeout=120)
    c.proc.kill()
    c.proc.wait(10)
    n = len(ovs.dump_flows(tun.name, f"cookie={COOKIE_STATIC:#x}/-1"))
    print(f"after kill -9: {n} of {len(tun.flows)} flows")
    assert n in (0, len(tun.flows)), f"partial program on the switch: {n} of {len(tun.flows)} flows"
    c.start()
    c.wait_for(r"\(hv1/br-tun\) connect: (updated|in sync), ", timeout=120)
    assert_equals_render(ovs, program, tmp_path)


@pytest.mark.ovs
def test_vswitchd_restart_is_fully_reprogrammed(ovs, controller_factory, tmp_path: Path) -> None:
    """ovs-vswitchd restarts with empty tables (the database keeps bridges and controller): the
    app sees a fresh connection and installs the whole program again."""
    from ovsflow.lab.netns import run
    from ovsflow.lab.ovs import pid_is, read_pid

    topo_file = DATA / "seed003-vxlan.yaml"
    program = compile_host(load_topology(topo_file), "hv3")
    port = free_port()
    make_bridges(ovs, program, port)
    c = controller_factory(port, topo_file, netns=ovs.netns).start()
    for b in program.bridges:
        c.wait_for(rf"\(hv3/{b.name}\) connect: updated, added={len(b.flows)} ")
    pid = read_pid(ovs.vswitchd_pidfile)
    ovs.appctl("exit")
    deadline = time.monotonic() + 10
    while pid_is(pid, "ovs-vswitchd") and time.monotonic() < deadline:
        time.sleep(0.05)
    run(["ovs-vswitchd", "--detach", "--no-chdir", "--pidfile", f"--log-file={ovs.vswitchd_log}",
         f"unix:{ovs.db_sock}"], netns=ovs.netns, env=ovs.env)
    ctl = ovs.workdir / f"ovs-vswitchd.{read_pid(ovs.vswitchd_pidfile)}.ctl"
    ovs.vswitchd_ctl.unlink()
    ovs.vswitchd_ctl.symlink_to(ctl.name)
    for b in program.bridges:
        c.wait_for(rf"\(hv3/{b.name}\) connect: updated, added={len(b.flows)} modified=0 deleted=0 ", count=2)
    assert_equals_render(ovs, program, tmp_path)
