"""The evaluator's OpenFlow semantics, on hand-made flows (no compiler involved)."""

from __future__ import annotations

import pytest

from ovsflow.evaluator import EvaluationError, Host, check_flow, learn_flow
from ovsflow.flow import (
    IN_PORT,
    Bucket,
    Flow,
    GotoTable,
    Group,
    GroupEntry,
    Learn,
    LearnSpec,
    Load,
    Move,
    Output,
    PopVlan,
    PushVlan,
    SetField,
)
from ovsflow.packet import BROADCAST, Frame, mac
from ovsflow.program import BridgeProgram, HostProgram, PortConfig

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


def ports(*numbers: int) -> list[PortConfig]:
    return [PortConfig(f"p{n}", n) for n in numbers]


def host_of(flows: list[Flow], nports: int = 4, groups=()) -> Host:
    """One bridge `br0` with ports p1..pN, as a Host (so outputs come back as Egress)."""
    bp = BridgeProgram("br0", "int", "netdev", 1, tuple(ports(*range(1, nports + 1))),
                       tuple(flows), tuple(groups))
    return Host(HostProgram("h", "192.0.2.1", (bp,)))


def send(h: Host, port: int, frame: Frame):
    return h.inject(f"p{port}", frame)


def test_highest_priority_wins_regardless_of_insertion_order():
    flows = [Flow.make(0, 10, {}, [Output(2)]), Flow.make(0, 20, {"dl_src": mac(A)}, [Output(3)])]
    for order in (flows, flows[::-1]):
        r = send(host_of(order), 1, Frame.ethernet(A, B))
        assert r.ports() == ["p3"], r.trace
        r = send(host_of(order), 1, Frame.ethernet(B, A))
        assert r.ports() == ["p2"], r.trace


def test_tie_at_same_priority_is_deterministic_and_reported():
    f1 = Flow.make(0, 10, {"dl_src": mac(A)}, [Output(3)])
    f2 = Flow.make(0, 10, {"dl_dst": mac(B)}, [Output(2)])
    outs = {tuple(send(host_of(o), 1, Frame.ethernet(A, B)).ports()) for o in ([f1, f2], [f2, f1])}
    assert len(outs) == 1  # the same winner whatever the insertion order
    r = send(host_of([f1, f2]), 1, Frame.ethernet(A, B))
    assert len(r.trace.ambiguities) == 1
    assert "tie" in str(r.trace)
    # No tie when only one of them matches.
    assert not send(host_of([f1, f2]), 1, Frame.ethernet(A, A)).trace.ambiguities


def test_table_miss_drops_and_trace_says_so():
    h = host_of([Flow.make(0, 1, {"in_port": 2}, [Output(3)]),
                 Flow.make(0, 1, {"in_port": 1}, [GotoTable(5)])])
    r = send(h, 1, Frame.ethernet(A, B))
    assert r.outputs == []
    assert r.trace.hits()[-1][2:] == (5, None)
    assert "no match: drop" in str(r.trace)


def test_actions_run_in_order_then_goto():
    h = host_of([
        Flow.make(0, 1, {}, [Output(2), SetField("eth_dst", mac(A)), Output(3), GotoTable(7)]),
        Flow.make(7, 1, {"dl_dst": mac(A)}, [SetField("eth_src", mac(B)), Output(4)]),
    ])
    r = send(h, 1, Frame.ethernet(A, B, payload="x"))
    got = [(e.port, e.frame.eth_src, e.frame.eth_dst) for e in r.outputs]
    assert got == [("p2", mac(A), mac(B)), ("p3", mac(A), mac(A)), ("p4", mac(B), mac(A))]
    assert r.trace.tables() == [0, 7]


def test_output_to_in_port_is_skipped_unless_IN_PORT():
    h = host_of([Flow.make(0, 1, {}, [Output(1), Output(2)])])
    assert send(h, 1, Frame.ethernet(A, B)).ports() == ["p2"]
    assert send(h, 2, Frame.ethernet(A, B)).ports() == ["p1"]
    h = host_of([Flow.make(0, 1, {}, [Output(IN_PORT)])])
    assert send(h, 3, Frame.ethernet(A, B)).ports() == ["p3"]


def test_output_to_missing_port_drops():
    r = send(host_of([Flow.make(0, 1, {}, [Output(9)])]), 1, Frame.ethernet(A, B))
    assert r.outputs == [] and "no such port" in str(r.trace)


@pytest.mark.parametrize(
    "match, vlan, hit",
    [
        ({"dl_vlan": 5}, 5, True),
        ({"dl_vlan": 5}, 6, False),
        ({"dl_vlan": 5}, None, False),
        ({"dl_vlan": 0}, None, False),  # dl_vlan=0 is "priority-tagged", not "untagged"
        ({"dl_vlan": 0}, 0, True),
        ({"vlan_tci": (0, 0x1FFF)}, None, True),
        ({"vlan_tci": (0, 0x1FFF)}, 0, False),
        ({"vlan_tci": (0, 0x1FFF)}, 7, False),
        ({"vlan_tci": (0x1000, 0x1000)}, 7, True),
        ({"vlan_tci": (0x1000, 0x1000)}, None, False),
        ({"vlan_tci": (5, 0x0FFF)}, 5, True),  # what learn()'s NXM_OF_VLAN_TCI[0..11] makes
        ({"vlan_tci": (5, 0x0FFF)}, None, False),
    ],
)
def test_vlan_matching(match, vlan, hit):
    h = host_of([Flow.make(0, 1, match, [Output(2)])])
    assert (send(h, 1, Frame.ethernet(A, B, vlan=vlan)).ports() == ["p2"]) is hit


@pytest.mark.parametrize(
    "match, frame, hit",
    [
        ({"dl_dst": (0, 1 << 40)}, Frame.ethernet(A, B), True),  # unicast
        ({"dl_dst": (0, 1 << 40)}, Frame.ethernet(A, BROADCAST), False),
        ({"dl_dst": (1 << 40, 1 << 40)}, Frame.ethernet(A, "01:00:5e:00:00:01"), True),
        ({"dl_dst": (1 << 40, 1 << 40)}, Frame.ethernet(A, B), False),
        ({"tun_id": (0x100, 0xF00)}, Frame(mac(A), mac(B), tun_id=0x1FF), True),
        ({"tun_id": (0x100, 0xF00)}, Frame(mac(A), mac(B), tun_id=0x2FF), False),
        ({"tun_id": 0x65}, Frame(mac(A), mac(B), tun_id=0x65), True),
        ({"tun_id": 0x65}, Frame(mac(A), mac(B)), False),
        ({"dl_type": 0x0806, "arp_tpa": 0xC6336402},
         Frame.arp_request(A, "198.51.100.1", "198.51.100.2"), True),
        ({"dl_type": 0x0806, "arp_tpa": 0xC6336402},
         Frame.arp_request(A, "198.51.100.1", "198.51.100.3"), False),
        ({"dl_type": 0x0806, "arp_op": 2}, Frame.arp_request(A, "198.51.100.1", "198.51.100.2"), False),
    ],
)
def test_masked_and_protocol_matches(match, frame, hit):
    flow = Flow.make(0, 1, match, [Output(2)])
    h = host_of([flow])
    # tun_id is metadata: keep it by injecting at the OpenFlow port directly.
    r = h.inject_ofport("br0", 1, frame)
    assert (r.ports() == ["p2"]) is hit, f"{flow} vs {frame}"


def test_push_set_pop_vlan():
    h = host_of([
        Flow.make(0, 1, {"in_port": 1, "vlan_tci": (0, 0x1FFF)},
                  [PushVlan(), SetField("vlan_vid", 0x1000 | 42), Output(2), GotoTable(1)]),
        Flow.make(1, 1, {"dl_vlan": 42}, [PopVlan(), Output(3)]),
    ])
    r = send(h, 1, Frame.ethernet(A, B))
    assert [(e.port, e.frame.vlan) for e in r.outputs] == [("p2", 42), ("p3", None)]


def test_group_all_applies_each_bucket_to_a_copy():
    g = GroupEntry(1, "all", (
        Bucket((SetField("tun_id", 0x65), Output(2))),
        Bucket((Output(3),)),  # must not see the tun_id of the first bucket
    ))
    h = host_of([Flow.make(0, 1, {}, [Group(1), Output(4)])], groups=[g])
    r = h.inject_ofport("br0", 1, Frame.ethernet(A, B))
    assert r.ports() == ["p2", "p3", "p4"]
    assert "group 1 type=all" in str(r.trace)


def test_check_flow_refuses_what_ovs_refuses():
    bad = [
        Flow.make(0, 1, {}, [PopVlan(), Output(1)]),  # pop without VLAN match
        Flow.make(0, 1, {"vlan_tci": (0, 0x1FFF)}, [PopVlan()]),
        Flow.make(0, 1, {}, [SetField("vlan_vid", 5)]),
        Flow.make(3, 1, {}, [GotoTable(3)]),
        Flow.make(3, 1, {}, [GotoTable(4), Output(1)]),
        Flow.make(0, 1, {"arp_op": 1}, [Output(1)]),
        Flow.make(0, 1, {}, [SetField("arp_op", 2)]),
        Flow.make(0, 1, {}, [Group(7)]),
        Flow.make(0, 1, {}, [Move("arp_sha", "arp_tha")]),
    ]
    for f in bad:
        with pytest.raises(EvaluationError):
            check_flow(f, groups={})
    good = [
        Flow.make(0, 1, {"dl_vlan": 3}, [PopVlan(), Output(1)]),
        Flow.make(0, 1, {"vlan_tci": (0x1000, 0x1000)}, [PopVlan()]),
        Flow.make(0, 1, {}, [PushVlan(), SetField("vlan_vid", 0x1005), GotoTable(1)]),
        Flow.make(0, 1, {"dl_type": 0x0806, "arp_op": 1}, [SetField("arp_op", 2)]),
        Flow.make(0, 1, {"dl_type": 0x0806}, [Move("arp_sha", "arp_tha")]),
        Flow.make(0, 1, {}, [Move("dl_src", "dl_dst")]),
    ]
    for f in good:
        check_flow(f, groups={})


SEED003_LEARN = Learn(
    table=20, priority=1, cookie=0x99, hard_timeout=300,
    specs=(
        LearnSpec("match", "vlan_tci", None, 12),  # NXM_OF_VLAN_TCI[0..11]
        LearnSpec("match", "dl_dst", "dl_src"),  # NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]
        LearnSpec("load", "vlan_tci", 0),  # load:0->NXM_OF_VLAN_TCI[]
        LearnSpec("load", "tun_id", "tun_id"),  # load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[]
        LearnSpec("output", None, "in_port"),  # output:NXM_OF_IN_PORT[]
    ),
)


def test_learn_builds_the_seed003_flow():
    frame = Frame(mac(A), BROADCAST, vlan=3, tun_id=0x65, in_port=2)
    f = learn_flow(SEED003_LEARN, frame)
    assert f.table == 20 and f.priority == 1 and f.cookie == 0x99 and f.hard_timeout == 300
    assert f.match_dict == {"vlan_tci": (3, 0x0FFF), "dl_dst": mac(A)}
    assert f.actions == (Load("vlan_tci", 0), Load("tun_id", 0x65), Output(2))
    assert f.actions_text() == "load:0->NXM_OF_VLAN_TCI[],load:0x65->NXM_NX_TUN_ID[],output:2"


def learning_bridge() -> Host:
    """Table 0 learns (from ports 2, 3: 'tunnels') and floods; table 20 holds the learned flows."""
    flows = [
        Flow.make(0, 2, {"in_port": 1}, [PushVlan(), SetField("vlan_vid", 0x1003), GotoTable(20)]),
        Flow.make(0, 1, {"vlan_tci": (0x1000, 0x1000)}, [SEED003_LEARN, Output(1), GotoTable(20)]),
        Flow.make(20, 0, {}, [Output(2), Output(3), Output(4)]),
    ]
    return host_of(flows)


def test_learned_flow_forwards_strips_vlan_and_sets_tunnel_key():
    h = learning_bridge()
    # A frame from a "tunnel" (port 3) with tun_id 0x65, already tagged VLAN 3, teaches A -> 3.
    r = h.inject_ofport("br0", 3, Frame(mac(A), BROADCAST, vlan=3, tun_id=0x65))
    assert len(r.learned) == 1
    # ... but only after its own pass: it was still flooded by table 20's miss flow.
    assert r.ports() == ["p1", "p2", "p4"]
    learned = h.bridge("br0").flows(table=20, cookie=0x99)
    assert len(learned) == 1
    r = send(h, 1, Frame.ethernet(B, A, payload="to A"))
    assert len(r.outputs) == 1, r.trace
    e = r.outputs[0]
    assert (e.port, e.frame.vlan, e.frame.payload) == ("p3", None, "to A")
    # The key rides on the frame's metadata: a VM port shows it in the trace.
    assert "load:0x65->NXM_NX_TUN_ID[]" in str(r.trace)


def test_learn_replaces_same_match_and_priority():
    h = learning_bridge()
    h.inject_ofport("br0", 3, Frame(mac(A), BROADCAST, vlan=3, tun_id=0x65))
    h.inject_ofport("br0", 2, Frame(mac(A), BROADCAST, vlan=3, tun_id=0x65))  # A moved to port 2
    learned = h.bridge("br0").flows(table=20, cookie=0x99)
    assert len(learned) == 1 and learned[0].actions[-1] == Output(2)
    # A different VLAN is a different learned entry (learning is per VLAN).
    h.inject_ofport("br0", 3, Frame(mac(A), BROADCAST, vlan=4, tun_id=0x66))
    assert len(h.bridge("br0").flows(table=20, cookie=0x99)) == 2


def test_learned_flow_expires_after_hard_timeout():
    h = learning_bridge()
    h.inject_ofport("br0", 3, Frame(mac(A), BROADCAST, vlan=3, tun_id=0x65))
    assert h.advance(299) == []
    assert send(h, 1, Frame.ethernet(B, A)).ports() == ["p3"]
    expired = h.advance(1)
    assert [f.cookie for f in expired] == [0x99]
    assert send(h, 1, Frame.ethernet(B, A)).ports() == ["p2", "p3", "p4"]  # flooded again


def test_patch_port_crossing_sets_in_port_and_clears_tunnel_metadata():
    int_flows = (Flow.make(0, 1, {"in_port": 2}, [Output(1)]),)
    tun_flows = (
        Flow.make(0, 1, {"in_port": 5, "tun_id": 0}, [SetField("tun_id", 0x42), Output(6)]),
        Flow.make(0, 0, {}, []),
    )
    hp = HostProgram("h", "192.0.2.1", (
        BridgeProgram("br-int", "int", "netdev", 1,
                      (PortConfig("patch-tun", 1, "patch", (("peer", "patch-int"),)),
                       PortConfig("vm", 2)), int_flows),
        BridgeProgram("br-tun", "tun", "netdev", 2,
                      (PortConfig("patch-int", 5, "patch", (("peer", "patch-tun"),)),
                       PortConfig("vx", 6, "vxlan", (("key", "flow"), ("remote_ip", "192.0.2.2")))),
                      tun_flows),
    ))
    h = Host(hp)
    r = h.inject_ofport("br-int", 2, Frame(mac(A), mac(B), tun_id=0x7))
    assert [(e.port, e.tun_id, e.remote_ip) for e in r.outputs] == [("vx", 0x42, "192.0.2.2")]
    assert [(b, t) for _, b, t, _ in r.trace.hits()] == [("br-int", 0), ("br-tun", 0)]


def test_patch_loop_is_an_error_not_a_hang():
    hp = HostProgram("h", "192.0.2.1", (
        BridgeProgram("a", "int", "netdev", 1, (PortConfig("pa", 1, "patch", (("peer", "pb"),)),
                                                PortConfig("x", 2)),
                      (Flow.make(0, 1, {"in_port": 2}, [Output(1)]),
                       Flow.make(0, 1, {"in_port": 1}, [Output(IN_PORT)]))),
        BridgeProgram("b", "tun", "netdev", 2, (PortConfig("pb", 1, "patch", (("peer", "pa"),)),),
                      (Flow.make(0, 1, {}, [Output(IN_PORT)]),)),
    ))
    with pytest.raises(EvaluationError, match="too deep"):
        Host(hp).inject("x", Frame.ethernet(A, B))


def test_arp_responder_style_rewrite_with_move_and_in_port():
    """What an l2pop ARP responder does: turn the request into a reply and send it back."""
    responder = Flow.make(0, 1, {"dl_type": 0x0806, "arp_op": 1, "arp_tpa": 0xC6336402}, [
        Move("dl_src", "dl_dst"), SetField("eth_src", mac(B)), SetField("arp_op", 2),
        Move("arp_sha", "arp_tha"), Move("arp_spa", "arp_tpa"),
        SetField("arp_sha", mac(B)), SetField("arp_spa", 0xC6336402), Output(IN_PORT),
    ])
    r = send(host_of([responder]), 2, Frame.arp_request(A, "198.51.100.1", "198.51.100.2"))
    assert r.ports() == ["p2"]
    f = r.outputs[0].frame
    assert (f.eth_src, f.eth_dst, f.arp_op) == (mac(B), mac(A), 2)
    assert (f.arp_sha, f.arp_spa, f.arp_tha, f.arp_tpa) == (mac(B), 0xC6336402, mac(A), 0xC6336401)
