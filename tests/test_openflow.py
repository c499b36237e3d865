"""The OpenFlow codec, byte for byte against Ryu's message objects (the oracle), both versions.

Ryu builds and serializes every message from objects; the codec writes the same bytes directly
(about ten times cheaper). Whatever the compiler emits, plus hand-made flows and groups that use
the rest (masks, moves, groups), must encode to exactly Ryu's bytes and decode back to the
canonical Flow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ryu.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3, ofproto_v1_4

from ovsflow import flow as F
from ovsflow.compiler import compile_all
from ovsflow.fields import FIELDS, OXM_OPENFLOW_BASIC
from ovsflow.flow import Flow, GroupEntry
from ovsflow.model import load_topology
from ovsflow.openflow import bundle as B
from ovsflow.openflow import decode as D
from ovsflow.openflow import encode as E
from ovsflow.openflow import oracle as O
from ovsflow.program import COOKIE_BASE, COOKIE_MASK, COOKIE_STATIC

DATA = Path(__file__).parent / "data"
TOPOLOGIES = ["seed003-vxlan.yaml", "seed003-gre.yaml", "seed003-mixed.yaml", "seed003-l2pop.yaml", "routed.yaml"]
VERSIONS = {"of13": ofproto_v1_3.OFP_VERSION, "of14": ofproto_v1_4.OFP_VERSION}


def hand_made() -> tuple[list[Flow], list[GroupEntry]]:
    """What the compiler does not emit on these topologies: groups, ARP responder moves, masks."""
    group = GroupEntry(7, "all", (
        F.Bucket((F.SetField("tun_id", 0x65), F.Output(9))),
        F.Bucket((F.SetField("tun_id", 0x65), F.Output(10))),
    ))
    arp = Flow.make(
        21, 1, {"dl_vlan": 5, "dl_type": 0x0806, "arp_op": 1, "arp_tpa": 0xC6336401},
        [F.Move("dl_src", "dl_dst"), F.SetField("eth_src", 0x020000000102), F.SetField("arp_op", 2),
         F.Move("arp_sha", "arp_tha"), F.Move("arp_spa", "arp_tpa"),
         F.SetField("arp_sha", 0x020000000102), F.SetField("arp_spa", 0xC6336401),
         F.PopVlan(), F.Output(F.IN_PORT)],
        cookie=COOKIE_STATIC,
    )
    flood = Flow.make(22, 2, {"dl_vlan": 5}, [F.PopVlan(), F.Group(7)], cookie=COOKIE_STATIC)
    masked = Flow.make(2, 3, {"tun_id": (0x100, 0xF00), "vlan_tci": (0x1000, 0x1000)}, [F.GotoTable(20)],
                       cookie=COOKIE_STATIC, hard_timeout=30, idle_timeout=10)
    push = Flow.make(0, 4, {"in_port": 3}, [F.PushVlan(0x8100), F.SetField("vlan_vid", 0x1005), F.Output(1)],
                     cookie=COOKIE_STATIC)
    route = Flow.make(0, 5, {"dl_type": 0x0800}, [F.DecTtl(), F.Output(2)], cookie=COOKIE_STATIC)
    return [arp, flood, masked, push, route], [group]


def ryu_orders_prerequisites_first(flow: Flow) -> bool:
    """Ryu writes NXM-class match fields (nw_ttl) before the OpenFlow-basic ones, so before their
    prerequisite eth_type, which OVS refuses; the codec writes basic fields first. Such flows are
    checked against ovs-ofctl on a real switch instead (test_openflow_ovs)."""
    return all(FIELDS[name].oxm is None or FIELDS[name].oxm[0] == OXM_OPENFLOW_BASIC for name, _ in flow.match)  # type: ignore[index]


def all_flows(topology: str) -> list[Flow]:
    programs = compile_all(load_topology(DATA / topology))
    return [f for p in programs.values() for b in p.bridges for f in b.flows] + hand_made()[0]


def all_groups(topology: str) -> list[GroupEntry]:
    programs = compile_all(load_topology(DATA / topology))
    return [g for p in programs.values() for b in p.bridges for g in b.groups] + hand_made()[1]


def ryu_bytes(msg: object, xid: int) -> bytes:
    msg.set_xid(xid)  # type: ignore[attr-defined]
    msg.serialize()  # type: ignore[attr-defined]
    return bytes(msg.buf)  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_flow_mods_and_bundle_adds_equal_ryu(topology: str, version: int) -> None:
    dp = ofproto_protocol.ProtocolDesc(version)
    enc = E.Encoder(version)
    for f in all_flows(topology):
        if not ryu_orders_prerequisites_first(f):
            classes = [tlv[:2] for tlv in enc.match_tlvs(f.match)]
            assert classes == sorted(classes, key=lambda c: c != b"\x80\x00"), f"prerequisites first: {f}"
            continue
        for command in ("add", "modify", "delete"):
            mine = enc.flow_mod(f, command, 77)
            assert mine == ryu_bytes(O.flow_mod(dp, f, command), 77), (command, f.ofctl())
            assert B.add(version, 3, enc.flow_mod(f, command, 78), 78) == ryu_bytes(
                O.bundle_add(dp, 3, O.flow_mod(dp, f, command)), 78)
            got_command, back, _ = D.flow_mod(mine)
            assert got_command == command and back.match == E.canonical_flow(f).match
            if command != "delete":
                assert back == E.canonical_flow(f), f.ofctl()


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_group_mods_equal_ryu(topology: str, version: int) -> None:
    dp = ofproto_protocol.ProtocolDesc(version)
    enc = E.Encoder(version)
    for g in all_groups(topology):
        for command in ("add", "modify", "delete"):
            assert enc.group_mod(g, command, 9) == ryu_bytes(O.group_mod(dp, g, command), 9), (command, g)


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
def test_requests_and_bundle_control_equal_ryu(version: int) -> None:
    dp = ofproto_protocol.ProtocolDesc(version)
    ofp, parser = dp.ofproto, dp.ofproto_parser
    stats = parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, COOKIE_BASE, COOKIE_MASK)
    assert E.flow_stats_request(version, 5, COOKIE_BASE, COOKIE_MASK) == ryu_bytes(stats, 5)
    assert E.group_desc_request(version, 6) == ryu_bytes(parser.OFPGroupDescStatsRequest(dp, 0), 6)
    assert E.barrier_request(version, 7) == ryu_bytes(parser.OFPBarrierRequest(dp), 7)
    assert E.echo_request(version, 8, b"abc") == ryu_bytes(parser.OFPEchoRequest(dp, b"abc"), 8)
    for kind in ("open", "commit", "discard"):
        assert B.control(version, 11, kind, 12) == ryu_bytes(O.bundle_ctrl(dp, 11, kind), 12)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_encode_flows_equals_one_flow_at_a_time(topology: str) -> None:
    """The batch encoder (memos shared between flows) gives each flow what the one-flow paths give:
    canonical form, ADD tail and wire key."""
    enc = E.Encoder()
    flows = all_flows(topology)
    batch = enc.encode_flows(flows)
    assert len(batch) == len(flows)
    for f, (canon, tail, key) in zip(flows, batch):
        assert canon == E.canonical_flow(f)
        assert tail == enc.flow_mod_tail(f, "add"), f.ofctl()
        assert key == enc.flow_key(canon), f.ofctl()


def stats_reply(version: int, flows: list[Flow], xid: int = 1) -> bytes:
    """A flow-stats reply as OVS writes one: each entry's match and instructions as sent."""
    enc = E.Encoder(version)
    body = b""
    for f in flows:
        tail = enc.flow_mod_tail(f, "add")
        rest = tail[40:]
        body += (len(rest) + 48).to_bytes(2, "big") + bytes((f.table, 0)) + bytes(8) + \
            f.priority.to_bytes(2, "big") + f.idle_timeout.to_bytes(2, "big") + f.hard_timeout.to_bytes(2, "big") + \
            bytes(6) + f.cookie.to_bytes(8, "big") + bytes(16) + rest
    return E.header(version, D.T_MULTIPART_REPLY, (1).to_bytes(2, "big") + bytes(6) + body, xid)


@pytest.mark.parametrize("version", VERSIONS.values(), ids=VERSIONS.keys())
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_stats_decoder_equals_ryu_parser(topology: str, version: int) -> None:
    """flow-stats bytes -> Flow agrees with Ryu's parser + the oracle's decoder, and entry keys
    equal the encoder's flow keys."""
    dp = ofproto_protocol.ProtocolDesc(version)
    flows = all_flows(topology)
    enc = E.Encoder(version)
    for i in range(0, len(flows), 100):
        chunk = flows[i:i + 100]
        msg = stats_reply(version, chunk)
        mine = D.flows_from_reply(msg)
        ryu = ofproto_parser.msg(dp, *ofproto_parser.header(msg), msg)
        assert mine == [O.flow_from_stats(dp.ofproto, s) for s in ryu.body]
        assert mine == [E.canonical_flow(f) for f in chunk]
        keys = [D.entry_key(msg, off)[1] for off in D.multipart(msg)[2]]
        assert keys == [enc.flow_key(f) for f in mine]


def test_canonical_match_spellings() -> None:
    """Spellings OVS treats as one match collapse to one canonical form."""
    assert E.canonical_match([("vlan_tci", (0x1064, 0x1FFF))]) == (("dl_vlan", 100),)
    assert E.canonical_match([("dl_vlan", 100)]) == (("dl_vlan", 100),)
    assert E.canonical_match([("vlan_tci", (0x0000, 0x1FFF))]) == (("vlan_tci", (0, 0x1FFF)),)
    assert E.canonical_match([("tun_id", (0x65, 0xFFFFFFFFFFFFFFFF))]) == (("tun_id", 0x65),)
    assert E.canonical_match([("dl_dst", (0x0300000000AB, 0x010000000000))]) == (
        ("dl_dst", (0x010000000000, 0x010000000000)),)
    with pytest.raises(E.EncodeError):
        E.canonical_match([("vlan_tci", (0x2000, 0xE000))])


def test_foreign_actions_are_refused() -> None:
    with pytest.raises(E.EncodeError):
        D.action(b"\x00\x0b\x00\x08\x00\x00\x00\x00")  # OFPAT_COPY_TTL_OUT: never written by ovsflow
