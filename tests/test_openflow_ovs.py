"""The OpenFlow codec and its Ryu oracle, proven against a real OVS and against OVS's own tool.

The claim: installing the compiler's flows as the codec's bytes (or as Ryu-built messages, the
oracle) leaves a switch in exactly the state `ovs-ofctl -O OpenFlow14 --bundle add-flows` of the same
flows' text does, and reading that switch back gives the compiled Flows again (canonical form), so
the live app's diff of an up-to-date switch is empty.

Messages are written to the bridge's management socket by a minimal OpenFlow client (below).
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from ryu.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3, ofproto_v1_4
from test_openflow import hand_made  # the same hand-made flows and groups the byte-level tests use

from ovsflow.compiler import compile_all
from ovsflow.flow import Flow, GroupEntry
from ovsflow.model import load_topology
from ovsflow.openflow import bundle as B
from ovsflow.openflow import decode as D
from ovsflow.openflow import encode as E
from ovsflow.openflow import oracle as R

DATA = Path(__file__).parent / "data"
TOPOLOGIES = ["seed003-vxlan.yaml", "seed003-gre.yaml", "seed003-mixed.yaml", "seed003-l2pop.yaml"]
# routed.yaml matches nw_ttl, an NXM_1 field: Ryu writes it before eth_type, and OVS refuses a match
# whose prerequisite comes later (OFPBMC_BAD_PREREQ), so Ryu cannot install it. The codec can: it is
# checked against ovs-ofctl's install below (test_codec_reads_a_real_switch...).
VERSIONS = {"of13": ofproto_v1_3.OFP_VERSION, "of14": ofproto_v1_4.OFP_VERSION}


class OFError(RuntimeError):
    pass


class OFClient:
    """A minimal OpenFlow client over a bridge's unix management socket (tests only)."""

    def __init__(self, path: str, version: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path.removeprefix("unix:"))
        self.dp = ofproto_protocol.ProtocolDesc(version)
        self.xid = 0
        self.send(self.dp.ofproto_parser.OFPHello(self.dp))
        hello = self.recv()
        assert type(hello).__name__ == "OFPHello", hello

    def close(self) -> None:
        self.sock.close()

    def send(self, msg: Any) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        msg.serialize()
        self.sock.sendall(bytes(msg.buf))
        return self.xid

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OFError("switch closed the connection")
            buf += chunk
        return buf

    def recv(self) -> Any:
        while True:
            head = self._read(8)
            version, msg_type, length, xid = struct.unpack("!BBHI", head)
            body = self._read(length - 8)
            if msg_type == 2:  # echo request: answer, keep reading
                reply = self.dp.ofproto_parser.OFPEchoReply(self.dp, data=body)
                reply.set_xid(xid)
                reply.serialize()
                self.sock.sendall(bytes(reply.buf))
                continue
            dp = ofproto_protocol.ProtocolDesc(version)
            msg = ofproto_parser.msg(dp, version, msg_type, length, xid, head + body)
            if type(msg).__name__ == "OFPErrorMsg":
                raise OFError(f"switch error type={msg.type} code={msg.code} xid={xid}")
            return msg

    def barrier(self) -> None:
        xid = self.send(self.dp.ofproto_parser.OFPBarrierRequest(self.dp))
        while True:
            msg = self.recv()
            if type(msg).__name__ == "OFPBarrierReply" and msg.xid == xid:
                return

    def multipart(self, request: Any) -> list[Any]:
        xid = self.send(request)
        body: list[Any] = []
        while True:
            msg = self.recv()
            if msg.xid != xid:
                continue
            body += msg.body
            if not msg.flags & self.dp.ofproto.OFPMPF_REPLY_MORE:
                return body

    def flows(self) -> list[Flow]:
        p = self.dp.ofproto_parser
        stats = self.multipart(p.OFPFlowStatsRequest(self.dp))
        return [R.flow_from_stats(self.dp.ofproto, s) for s in stats]

    def groups(self) -> list[GroupEntry]:
        p = self.dp.ofproto_parser
        return [R.group_from_desc(self.dp.ofproto, g) for g in self.multipart(p.OFPGroupDescStatsRequest(self.dp))]


def install_with_ryu(ovs, bridge: str, flows, groups=(), version=ofproto_v1_4.OFP_VERSION) -> None:
    client = OFClient(ovs.mgmt(bridge), version)
    try:
        msgs = [R.group_mod(client.dp, g) for g in groups] + [R.flow_mod(client.dp, f) for f in flows]
        for m in R.bundle(client.dp, 1, msgs):
            client.send(m)
        client.barrier()
    finally:
        client.close()


def install_with_ofctl(ovs, bridge: str, flows, groups=()) -> None:
    lines = [f"group add {g.ofctl()}" for g in groups] + [f"flow add {f.ofctl()}" for f in flows]
    ovs.ofctl("bundle", ovs.mgmt(bridge), "-", input="\n".join(lines) + "\n")


def fresh_bridge(ovs, name: str) -> None:
    """An empty fail_mode=secure bridge (as ovsflow's are: no default NORMAL flow)."""
    ovs.vsctl("--if-exists", "del-br", name)
    ovs.add_bridge(name)
    ovs.vsctl("set-fail-mode", name, "secure")


def dump(ovs, bridge: str) -> tuple[list[str], list[str]]:
    flows = sorted(ovs.dump_flows(bridge))
    groups = ovs.ofctl("dump-groups", ovs.mgmt(bridge)).splitlines()
    return flows, sorted(g.strip() for g in groups if "reply" not in g)


# ------------------------------------------------------------------------------------------------
# pure tests: encode -> Ryu serialize -> Ryu parse -> decode is the canonical Flow


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_flow_mod_round_trip(topology: str, version: int) -> None:
    dp = ofproto_protocol.ProtocolDesc(version)
    programs = compile_all(load_topology(DATA / topology))
    flows = [f for p in programs.values() for b in p.bridges for f in b.flows] + hand_made()[0]
    for f in flows:
        mod = R.flow_mod(dp, f)
        mod.set_xid(1)
        mod.serialize()
        buf = bytes(mod.buf)
        back = ofproto_parser.msg(dp, *ofproto_parser.header(buf), buf)
        got = Flow(back.table_id, back.priority, R.decode_match(back.match),
                   R.decode_instructions(dp.ofproto, back.instructions), back.cookie,
                   back.hard_timeout, back.idle_timeout)
        assert got == E.canonical_flow(f), f.ofctl()


# ------------------------------------------------------------------------------------------------
# real OVS: Ryu-installed == ofctl-installed, and reading back gives the program


@pytest.mark.ovs
@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_ryu_install_equals_ofctl_install(ovs, topology: str, version: int) -> None:
    programs = compile_all(load_topology(DATA / topology))
    for host, program in programs.items():
        for b in program.bridges:
            a, r = f"o{b.role}", f"r{b.role}"  # one OVS, two bridges per role: ofctl vs Ryu
            for name in (a, r):
                fresh_bridge(ovs, name)
            install_with_ofctl(ovs, a, b.flows, b.groups)
            install_with_ryu(ovs, r, b.flows, b.groups, version)
            by_ofctl, by_ryu = dump(ovs, a), dump(ovs, r)
            assert len(by_ofctl[0]) == len(b.flows)
            assert by_ryu == by_ofctl, f"{topology} {host} {b.name}"
            client = OFClient(ovs.mgmt(r), version)
            try:
                assert sorted(client.flows(), key=Flow.sort_key) == sorted(
                    (E.canonical_flow(f) for f in b.flows), key=Flow.sort_key)
            finally:
                client.close()


@pytest.mark.ovs
def test_groups_moves_masks_equal_ofctl(ovs) -> None:
    flows, groups = hand_made()
    for name in ("oh", "rh"):
        fresh_bridge(ovs, name)
    install_with_ofctl(ovs, "oh", flows, groups)
    install_with_ryu(ovs, "rh", flows, groups)
    by_ofctl, by_ryu = dump(ovs, "oh"), dump(ovs, "rh")
    assert len(by_ofctl[0]) == len(flows) and len(by_ofctl[1]) == len(groups)
    assert by_ryu == by_ofctl
    client = OFClient(ovs.mgmt("rh"), ofproto_v1_4.OFP_VERSION)
    try:
        assert sorted(client.flows(), key=Flow.sort_key) == sorted(
            (E.canonical_flow(f) for f in flows), key=Flow.sort_key)
        assert client.groups() == [E.canonical_group(g) for g in groups]
    finally:
        client.close()


@pytest.mark.ovs
@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology, host, role", [("seed003-mixed.yaml", "hv1", "tun"), ("routed.yaml", "hv1", "int"),
                                                  ("routed.yaml", "hv3", "int"), ("routed.yaml", "hv3", "tun")])
def test_codec_reads_a_real_switch_like_ryu_and_installs_like_ofctl(ovs, version: int, topology: str, host: str,
                                                                     role: str) -> None:
    """A real switch's flow-stats and group-desc replies decode (codec) to what Ryu's parser and
    the oracle's decoder say, and to the program; the codec's bundle installs what ovs-ofctl does."""
    programs = compile_all(load_topology(DATA / topology))
    tun = programs[host].bridge(role)
    flows, groups = hand_made()
    everything, all_groups = [*tun.flows, *flows], [*tun.groups, *groups]
    fresh_bridge(ovs, "ob")
    install_with_ofctl(ovs, "ob", everything, all_groups)
    fresh_bridge(ovs, "cb")
    client = OFClient(ovs.mgmt("cb"), version)
    try:
        enc = E.Encoder(version)
        data = B.control(version, 1, "open", 1)
        for i, g in enumerate(all_groups):
            data += B.add(version, 1, enc.group_mod(g, "add", 10 + i), 10 + i)
        for i, f in enumerate(everything):
            data += B.add(version, 1, enc.flow_mod(f, "add", 1000 + i), 1000 + i)
        client.sock.sendall(data + B.control(version, 1, "commit", 2))
        client.xid = 5000
        client.barrier()
        assert dump(ovs, "cb") == dump(ovs, "ob")
        p = client.dp.ofproto_parser
        for request, decode_mine, decode_ryu in (
                (p.OFPFlowStatsRequest(client.dp), D.flows_from_reply,
                 lambda s: R.flow_from_stats(client.dp.ofproto, s)),
                (p.OFPGroupDescStatsRequest(client.dp), D.groups_from_reply,
                 lambda g: R.group_from_desc(client.dp.ofproto, g))):
            xid = client.send(request)
            mine, ryu = [], []
            while True:
                msg = client.recv()
                if msg.xid != xid:
                    continue
                mine += decode_mine(bytes(msg.buf))
                ryu += [decode_ryu(e) for e in msg.body]
                if not msg.flags & client.dp.ofproto.OFPMPF_REPLY_MORE:
                    break
            assert mine == ryu
            if decode_mine is D.flows_from_reply:
                assert sorted(mine, key=Flow.sort_key) == sorted(map(E.canonical_flow, everything), key=Flow.sort_key)
            else:
                assert sorted(mine, key=lambda g: g.group_id) == sorted(map(E.canonical_group, all_groups),
                                                                       key=lambda g: g.group_id)
    finally:
        client.close()
