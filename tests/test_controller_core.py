"""The controller core against a fake switch: no Ryu, no OVS, no root.

The fake switch answers the core's requests as OVS would (flow-stats and group-desc replies of the
ovsflow-cookie flows it holds) and applies the bundles the core writes (bundle-adds of flow-mods
and group-mods, decoded with the codec), counting flow-mods: what a real switch would see.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from ovsflow import flow as F
from ovsflow.controller import core as C
from ovsflow.flow import Flow, GroupEntry
from ovsflow.openflow import decode as D
from ovsflow.openflow import encode as E
from ovsflow.program import COOKIE_BASE, COOKIE_LEARNED, COOKIE_MASK, COOKIE_STATIC

DATA = Path(__file__).parent / "data"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeSwitch:
    """A switch's flow table and groups, as far as OpenFlow shows them."""

    def __init__(self, dpid: int, version: int = E.OFP14) -> None:
        self.dpid, self.version = dpid, version
        self.flows: dict[tuple, Flow] = {}
        self.groups: dict[int, GroupEntry] = {}
        self.flow_mods: list[tuple[str, Flow]] = []

    def flow_replies(self) -> list[bytes]:
        """OVS answers in parts of at most 64 KiB; only flows under the ovsflow cookie are asked for."""
        enc = E.Encoder(self.version)
        entries = []
        for f in self.flows.values():
            if f.cookie & COOKIE_MASK != COOKIE_BASE:
                continue
            rest = enc.flow_mod_tail(f, "add")[40:]
            entries.append(struct.pack("!HBxIIHHHH4xQQQ", 48 + len(rest), f.table, 0, 0, f.priority,
                                       f.idle_timeout, f.hard_timeout, 0, f.cookie, 0, 0) + rest)
        out, body = [], b""
        for i, e in enumerate(entries):
            body += e
            if len(body) > 60000 or i == len(entries) - 1:
                more = 0 if i == len(entries) - 1 else 1
                out.append(E.header(self.version, D.T_MULTIPART_REPLY, struct.pack("!HH4x", 1, more) + body, 1))
                body = b""
        return out or [E.header(self.version, D.T_MULTIPART_REPLY, struct.pack("!HH4x", 1, 0), 1)]

    def group_replies(self) -> list[bytes]:
        enc = E.Encoder(self.version)
        body = b""
        for g in self.groups.values():
            mod = enc.group_mod(g, "add", 0)[16:]  # its buckets
            body += struct.pack("!HBxI", 8 + len(mod), E.GROUP_TYPES[g.type], g.group_id) + mod
        return [E.header(self.version, D.T_MULTIPART_REPLY, struct.pack("!HH4x", 7, 0) + body, 1)]

    def apply(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        pos = 0
        while pos < len(data):
            _version, msg_type, length, xid = D.message_header(data[pos:])
            msg = data[pos:pos + length]
            pos += length
            inner_at = {34: 16, 4: 24}.get(msg_type)
            if inner_at is None or (msg_type == 4 and int.from_bytes(msg[12:16], "big") != 2301):
                continue  # bundle control: this fake applies each add at once
            inner = msg[inner_at:]
            assert D.message_header(inner)[3] == xid  # OVS insists
            if inner[1] == E.T_FLOW_MOD:
                self._flow_mod(inner)
            else:
                self._group_mod(inner)

    def _flow_mod(self, msg: bytes) -> None:
        command, f, cookie_mask = D.flow_mod(msg)
        self.flow_mods.append((command, f))
        key = (f.table, f.priority, f.match)
        old = self.flows.get(key)
        if command == "add":
            self.flows[key] = f
        elif command == "modify" and old is not None:
            self.flows[key] = Flow(old.table, old.priority, old.match, f.actions, old.cookie,
                                   old.hard_timeout, old.idle_timeout)
        elif command == "delete" and old is not None and old.cookie & cookie_mask == f.cookie & cookie_mask:
            del self.flows[key]

    def _group_mod(self, msg: bytes) -> None:
        command, gtype, gid = struct.unpack_from("!HBxI", msg, 8)
        buckets, pos = [], 16
        while pos < len(msg):
            blen = int.from_bytes(msg[pos:pos + 2], "big")
            buckets.append(F.Bucket(tuple(D.actions_at(msg, pos + 16, pos + blen, {}))))
            pos += blen
        if command == 2:
            self.groups.pop(gid, None)
        else:
            self.groups[gid] = GroupEntry(gid, D.GROUP_NAMES[gtype], tuple(buckets))

    def program(self) -> list[Flow]:
        return sorted((f for f in self.flows.values() if f.cookie == COOKIE_STATIC), key=Flow.sort_key)


def reconcile(core: C.Core, sw: FakeSwitch, conn: object, why: str = "connect", moves: C.Moves | None = None) -> None:
    """What the Ryu shell does, without Ryu."""
    job = core.begin(sw.dpid, conn, why, moves)  # type: ignore[arg-type]
    assert job is not None
    try:
        if job.read:
            job.compile()
            job.diff(sw.flow_replies(), sw.group_replies())
        else:
            job.diff()
        xids = iter(range(100, 1 << 30))
        sw.apply(list(job.bundle(lambda: next(xids))))
        job.done()
    finally:
        core.end(job)


@pytest.fixture
def topo(tmp_path: Path) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text((DATA / "seed003-vxlan.yaml").read_text())
    return path


def started(topo: Path) -> tuple[C.Core, Clock]:
    clock = Clock()
    core = C.Core(str(topo), clock)
    assert core.reload("start") == []
    return core, clock


def switches(core: C.Core, host: str) -> list[FakeSwitch]:
    assert core.programs is not None
    return [FakeSwitch(d) for d in core.programs.graph.datapath_ids(host)]


def connect(core: C.Core, sw: FakeSwitch) -> object:
    conn = object()
    core.connected(sw.dpid, conn, sw.version)  # type: ignore[arg-type]
    reconcile(core, sw, conn)
    return conn


def test_connect_programs_then_resync_in_sync_sends_nothing_and_drift_exactly_the_difference(topo: Path) -> None:
    core, _ = started(topo)
    int_sw, tun_sw = switches(core, "hv1")
    for sw in (int_sw, tun_sw):
        connect(core, sw)
        target = core.programs.target(sw.dpid)  # type: ignore[union-attr]
        assert sw.program() == sorted(target.flows, key=Flow.sort_key)
        assert len(sw.flow_mods) == len(target.flows)
        assert sorted(sw.groups.values(), key=lambda g: g.group_id) == sorted(target.groups, key=lambda g: g.group_id)
    # A controller restart: a new core, a new connection, the switch already right: zero flow-mods.
    core2, _ = started(topo)
    tun_sw.flow_mods.clear()
    connect(core2, tun_sw)
    assert tun_sw.flow_mods == []
    # Drift behind its back: one program flow gone, one stale ovsflow flow, learned and foreign kept.
    target = core2.programs.target(tun_sw.dpid)  # type: ignore[union-attr]
    lost = target.flows[3]
    del tun_sw.flows[(lost.table, lost.priority, lost.match)]
    stale = Flow.make(22, 1, {"dl_vlan": 999}, [F.PopVlan(), F.Output(5)], cookie=COOKIE_STATIC)
    learned = Flow.make(20, 1, {"dl_vlan": 101, "dl_dst": 0x020000000009}, [F.Output(3)], cookie=COOKIE_LEARNED,
                        hard_timeout=300)
    foreign = Flow.make(0, 50, {"in_port": 7}, [F.Output(8)], cookie=0x1234)
    for f in (stale, learned, foreign):
        tun_sw.flows[(f.table, f.priority, f.match)] = f
    tun_sw.flow_mods.clear()
    reconcile(core2, tun_sw, core2.switches[tun_sw.dpid].conn, "audit")
    assert [(c, f.table, f.priority, f.match) for c, f in tun_sw.flow_mods] == [
        ("delete", stale.table, stale.priority, stale.match)]  + [("add", lost.table, lost.priority, lost.match)]
    assert tun_sw.flow_mods[1][1] == E.canonical_flow(lost)
    assert tun_sw.program() == sorted(target.flows, key=Flow.sort_key)
    assert learned in tun_sw.flows.values() and foreign in tun_sw.flows.values()


def test_update_reaches_only_changed_switches_with_only_the_changed_flows(topo: Path) -> None:
    core, _ = started(topo)
    sws = {(h, i): sw for h in ("hv1", "hv2", "hv3") for i, sw in enumerate(switches(core, h))}
    for sw in sws.values():
        connect(core, sw)
        sw.flow_mods.clear()
    # a new VM on hv3 only, in a network every host shares: hv3's br-int learns a port, nobody else
    # changes (learn networks: the others learn its MAC)
    topo.write_text(topo.read_text() + '  blue4: {host: hv3, network: blue, mac: "02:00:00:00:00:04", ip: 198.51.100.4}\n')
    updates = core.reload("file change")
    assert updates is not None
    assert {u.dpid for u in updates} == {sws[("hv3", 0)].dpid}
    for u in updates:
        sw = next(s for s in sws.values() if s.dpid == u.dpid)
        before = dict(sw.flows)
        job = core.begin(u.dpid, u.conn, "file change", u.moves)
        assert job is not None and not job.read  # confirmed on this connection: nothing to read back
        core.end(job)
        reconcile(core, sw, u.conn, "file change", u.moves)
        target = core.programs.target(u.dpid)  # type: ignore[union-attr]
        assert sw.program() == sorted(target.flows, key=Flow.sort_key)
        changed = {k for k in before.keys() | sw.flows.keys() if before.get(k) != sw.flows.get(k)}
        assert 0 < len(sw.flow_mods) == len(changed)  # one flow-mod per changed flow, none for the rest
    assert all(not sw.flow_mods for key, sw in sws.items() if key != ("hv3", 0))


def test_a_moved_vm_is_forgotten_and_hinted_on_its_networks_switches(topo: Path) -> None:
    core, _ = started(topo)
    tuns = {h: switches(core, h)[1] for h in ("hv1", "hv2", "hv3")}
    for sw in tuns.values():
        connect(core, sw)
        sw.flow_mods.clear()
    topo.write_text(topo.read_text().replace("blue2: {host: hv2", "blue2: {host: hv3"))
    updates = core.reload("file change")
    assert updates is not None
    by_dpid = {u.dpid: u for u in updates}
    assert {tuns[h].dpid for h in tuns} <= set(by_dpid)
    mac = 0x020000000002
    assert by_dpid[tuns["hv2"].dpid].moves is None  # no longer in the network: its program changed, that is all
    for host in ("hv1", "hv3"):
        sw = tuns[host]
        u = by_dpid[sw.dpid]
        assert u.moves is not None and [m for _, m in u.moves[0]] == [mac]
        reconcile(core, sw, u.conn, "file change", u.moves)
        forgets = [f for c, f in sw.flow_mods if c == "delete" and f.cookie == COOKIE_LEARNED]
        hints = [f for c, f in sw.flow_mods if c == "add" and f.cookie == COOKIE_LEARNED]
        assert [dict(f.match)["dl_dst"] for f in forgets] == [mac]
        assert [dict(f.match)["dl_dst"] for f in hints] == ([] if host == "hv3" else [mac])  # the new host delivers locally


def test_invalid_reload_keeps_the_program_and_says_so_in_one_line(topo: Path, caplog: pytest.LogCaptureFixture) -> None:
    core, _ = started(topo)
    sw = switches(core, "hv1")[1]
    connect(core, sw)
    programs = core.programs
    topo.write_text(topo.read_text().replace("vni: 101", "vni: 0"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ovsflow.app"):
        assert core.reload("file change") is None
    assert core.programs is programs
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "rejected (file change), keeping the running program" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage() and "networks.blue.vni" in caplog.records[0].getMessage()
    sw.flow_mods.clear()
    reconcile(core, sw, core.switches[sw.dpid].conn, "audit")
    assert sw.flow_mods == []


def test_a_failed_compile_leaves_nothing_behind(topo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core, _ = started(topo)
    sw = switches(core, "hv1")[1]
    connect(core, sw)
    conn = core.switches[sw.dpid].conn
    topo.write_text(topo.read_text() + '  blue9: {host: hv2, network: blue, mac: "02:00:00:00:00:09"}\n')
    assert core.reload("file change") is not None
    programs = core.programs
    assert programs is not None

    def broken(dpid: int, previous: object = None) -> None:
        raise RuntimeError("compiler failure")

    monkeypatch.setattr(programs, "target", broken)
    job = core.begin(sw.dpid, conn, "connect")
    assert job is not None
    with pytest.raises(RuntimeError):
        try:
            job.compile()
        finally:
            core.end(job)
    assert core.busy == 0 and core.idle()
    assert core.switches[sw.dpid].confirmed is None  # the next reconcile reads the switch back
    monkeypatch.undo()
    sw.flow_mods.clear()
    job = core.begin(sw.dpid, conn, "connect")
    assert job is not None and job.read
    core.end(job)
    reconcile(core, sw, conn)
    assert sw.program() == sorted(programs.target(sw.dpid).flows, key=Flow.sort_key)  # type: ignore[union-attr]


def test_compile_ahead_waits_for_handshakes_and_stops_at_its_budget(topo: Path, caplog: pytest.LogCaptureFixture) -> None:
    core, clock = started(topo)
    core.handshake("conn", True)
    assert not core.idle()
    clock.t += C.HANDSHAKE_WAIT + 1  # stuck in its handshake: no longer holds background work
    assert core.idle()
    core.handshake("conn", False)
    core.busy += 1
    assert not core.idle()
    core.busy -= 1
    # budget: hv1's pieces alone exceed 1 flow, so exactly one host is compiled ahead
    core.compile_ahead_budget = 1
    with caplog.at_level(logging.INFO, logger="ovsflow.app"):
        steps = sum(1 for _ in core.compile_ahead())
    assert steps > 0
    text = caplog.text
    assert "compile-ahead budget reached" in text and "compiled 1 hosts' networks" in text
    # a reload in the middle stops the work in hand
    core.compile_ahead_budget = C.DEFAULT_COMPILE_AHEAD
    gen = core.compile_ahead()
    next(gen)
    assert core.reload("SIGHUP") == []
    assert list(gen) == []


class _Sock:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


@pytest.mark.parametrize("split", [1, 3, 7, 64, 1 << 20])
def test_reply_tap_takes_only_its_replies_and_passes_every_other_byte_in_order(split: int) -> None:
    """Installed mid-message (Ryu already read part of the first one), the tap passes bytes through
    until the echo reply carrying its marker, then takes multipart replies to its xids only."""
    from ovsflow.controller.tap import ReplyTap

    got: list[tuple[int, bytes]] = []
    tap = ReplyTap(_Sock([]), lambda xid, msg: got.append((xid, msg)))
    tap.wanted.add(41)
    partial = E.header(5, 10, b"\x01" * 30, 3)[11:]  # the rest of a packet-in Ryu began to read
    mine_early = E.header(5, 19, b"\x00\x01\x00\x00" + bytes(20), 41)  # before alignment: Ryu's
    echo = E.header(5, 3, tap.marker, 7)
    mine = [E.header(5, 19, b"\x00\x01\x00\x01" + bytes(40), 41), E.header(5, 19, b"\x00\x01\x00\x00" + bytes(8), 41)]
    other = E.header(5, 19, b"\x00\x07\x00\x00", 42)  # someone else's reply
    barrier = E.header(5, 21, b"", 41)  # not a multipart reply: Ryu's, even with our xid
    stream = partial + mine_early + echo + mine[0] + other + mine[1] + barrier
    tap._sock = _Sock([stream[i:i + split] for i in range(0, len(stream), split)])
    passed = b""
    while True:
        data = tap.recv(8)
        if not data:
            break
        passed += data
    assert passed == partial + mine_early + echo + other + barrier
    assert got == [(41, mine[0]), (41, mine[1])]


def test_core_codec_and_watch_import_neither_ryu_nor_eventlet() -> None:
    import subprocess
    import sys

    code = ("import sys, ovsflow.controller.core, ovsflow.controller.tap, ovsflow.controller.watch; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ryu', 'eventlet', 'prometheus_client'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_the_core_counts_what_it_did_and_the_metrics_show_it(topo: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17: every number the Prometheus endpoint exports is counted here, by the core, and
    moves exactly as the events it counts: connects, bundles and their flow-/group-mods, reloads
    accepted and refused, moved VMs, audit drift (a warning), latency from change to barrier."""
    from ovsflow.metrics import exposition, parse

    core, clock = started(topo)
    core.wall = lambda: 5_000.0 + clock.t  # type: ignore[method-assign]
    st = core.stats
    assert (st.reloads_accepted, st.reloads_refused, st.bundles, st.flow_mods, st.connects) == (1, 0, 0, 0, 0)
    sws = {h: switches(core, h) for h in ("hv1", "hv2", "hv3")}
    for pair in sws.values():
        for sw in pair:
            conn = object()
            core.connected(sw.dpid, conn, sw.version)  # type: ignore[arg-type]
            clock.t += 0.25  # the switch dumps its (empty) tables meanwhile
            reconcile(core, sw, conn)
    n_flows = sum(len(sw.flow_mods) for pair in sws.values() for sw in pair)
    n_groups = sum(len(sw.groups) for pair in sws.values() for sw in pair)
    assert (st.connects, st.bundles, st.flow_mods, st.group_mods) == (6, 6, n_flows, n_groups)
    assert st.update_latency["connect"].count == 6 and st.update_latency["connect"].sum == pytest.approx(6 * 0.25)
    m = parse(exposition(core))
    hv1_int = f"{sws['hv1'][0].dpid:016x}"
    labels = (("bridge", "br-int"), ("dpid", hv1_int), ("host", "hv1"))
    assert m[("ovsflow_switches_connected", ())] == 6
    assert m[("ovsflow_switch_up", labels)] == 1
    assert m[("ovsflow_switch_program_flows", labels)] == len(core.programs.target(sws["hv1"][0].dpid).flows)  # type: ignore[union-attr]
    assert m[("ovsflow_switch_last_sync_timestamp_seconds", labels)] == 5_000.0 + 1000.25  # the first one synced
    assert m[("ovsflow_flow_mods_total", ())] == n_flows and m[("ovsflow_bundles_total", ())] == 6
    assert m[("ovsflow_update_latency_seconds_count", (("trigger", "connect"),))] == 6
    assert m[("ovsflow_update_latency_seconds_bucket", (("le", "0.25"), ("trigger", "connect")))] == 6
    assert m[("ovsflow_update_latency_seconds_bucket", (("le", "0.1"), ("trigger", "connect")))] == 0
    assert m[("ovsflow_reloads_total", (("result", "accepted"),))] == 1
    # a refused reload: counted, nothing sent
    good = topo.read_text()
    topo.write_text(good.replace("vni: 101", "vni: 0"))
    assert core.reload("file change") is None
    assert (st.reloads_accepted, st.reloads_refused, st.bundles) == (1, 1, 6)
    # a VM moves: one reload, one moved VM, bundles only to the switches that changed; latency from the reload
    topo.write_text(good.replace("blue2: {host: hv2", "blue2: {host: hv3"))
    t_reload = clock.t
    updates = core.reload("file change")
    assert updates is not None and st.reloads_accepted == 2 and st.moved_vms == 1
    before = st.flow_mods
    for pair in sws.values():
        for s in pair:
            s.flow_mods.clear()
    for u in updates:
        clock.t += 0.004
        sw = next(s for pair in sws.values() for s in pair if s.dpid == u.dpid)
        reconcile(core, sw, u.conn, "file change", u.moves)
        assert st.last_sync[u.dpid] == 5_000.0 + clock.t
    assert st.bundles == 6 + len(updates)
    assert st.flow_mods - before == sum(len(s.flow_mods) for pair in sws.values() for s in pair)
    h = st.update_latency["reload"]
    assert h.count == len(updates) and h.sum == pytest.approx(sum(0.004 * (i + 1) for i in range(len(updates))))
    assert clock.t - t_reload == pytest.approx(0.004 * len(updates))
    # an audit of a switch in sync: counted, no drift; then drift behind its back: a warning, counted
    tun = sws["hv1"][1]
    reconcile(core, tun, core.switches[tun.dpid].conn, "audit")
    assert (st.audits, st.audit_drift) == (1, 0)
    target = core.programs.target(tun.dpid)  # type: ignore[union-attr]
    lost = target.flows[0]
    del tun.flows[(lost.table, lost.priority, lost.match)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ovsflow.app"):
        reconcile(core, tun, core.switches[tun.dpid].conn, "audit")
    assert (st.audits, st.audit_drift, st.audit_drift_changes) == (2, 1, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"ovsflow: switch {tun.dpid:016x} (hv1/br-tun): audit found drift, repaired: added=1 "), warnings
    # a lost switch: the gauge and the counter say so
    assert core.disconnected(tun.dpid, core.switches[tun.dpid].conn)
    m = parse(exposition(core))
    assert m[("ovsflow_switches_connected", ())] == 5 and m[("ovsflow_switch_disconnects_total", ())] == 1
    tun_labels = (("bridge", "br-tun"), ("dpid", f"{tun.dpid:016x}"), ("host", "hv1"))
    assert m[("ovsflow_switch_up", tun_labels)] == 0
    assert m[("ovsflow_reloads_total", (("result", "refused"),))] == 1 and m[("ovsflow_moved_vms_total", ())] == 1
    assert m[("ovsflow_audit_drift_total", ())] == 1 and m[("ovsflow_compile_seconds_count", (("stage", "reload"),))] == 2
