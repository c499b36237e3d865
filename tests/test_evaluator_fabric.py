"""The evaluator's multi-host fabric and frame model, on hand-made programs (no compiler)."""

from __future__ import annotations

import pytest

from ovsflow.evaluator import EvaluationError, Fabric
from ovsflow.flow import IN_PORT, Flow, GotoTable, Output, SetField
from ovsflow.packet import BROADCAST, Frame, mac
from ovsflow.program import BridgeProgram, HostProgram, PortConfig

VTEPS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}


def tunnel(name: str, ofport: int, local: str, remote: str, key: str = "flow",
           type_: str = "vxlan") -> PortConfig:
    return PortConfig(name, ofport, type_, (("key", key), ("local_ip", VTEPS[local]),
                                            ("remote_ip", VTEPS[remote])))


def host(name: str, tunnels: list[PortConfig], flows: list[Flow]) -> HostProgram:
    """One bridge: VM port `vm` (ofport 1) plus the given tunnel ports."""
    bp = BridgeProgram("br0", "tun", "netdev", 1, (PortConfig("vm", 1), *tunnels), tuple(flows))
    return HostProgram(name, VTEPS[name], (bp,))


def repeater(key: int, out: list[int]) -> list[Flow]:
    """From the VM: set the key and send to `out`; from any tunnel: to the VM."""
    return [
        Flow.make(0, 2, {"in_port": 1}, [SetField("tun_id", key), *map(Output, out)]),
        Flow.make(0, 1, {}, [Output(1)]),
    ]


def test_tunnel_frame_enters_the_remote_on_its_port_to_us_with_the_key():
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b"), tunnel("to-c", 11, "a", "c")], repeater(0x65, [10, 11])),
        host("b", [tunnel("to-c", 20, "b", "c"), tunnel("to-a", 21, "b", "a")], repeater(0, [])),
        host("c", [tunnel("to-a", 30, "c", "a")], repeater(0, [])),
    ])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST, payload="hi"))
    assert sorted((e.remote_ip, e.tun_id) for e in res.tunnel_hops) == [("192.0.2.2", 0x65), ("192.0.2.3", 0x65)]
    assert res.delivered_to() == [("b", "vm"), ("c", "vm")]
    assert all(e.frame.payload == "hi" and e.frame.tun_id == 0 for e in res.deliveries)
    # The remote saw the key as metadata on its tunnel port (b's port to a is ofport 21).
    b_hits = [s for s in res.trace.steps if s.host == "b" and s.table == 0]
    assert [(s.frame.in_port, s.frame.tun_id) for s in b_hits] == [(21, 0x65)]


def test_tunnel_without_a_matching_port_on_the_remote_is_lost():
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b"), tunnel("to-c", 11, "a", "c", type_="gre")],
             repeater(7, [10, 11])),
        host("b", [], repeater(0, [])),  # b has no tunnel port back to a
        host("c", [tunnel("to-a", 30, "c", "a")], repeater(0, [])),  # vxlan, not gre
    ])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))
    assert res.deliveries == []
    reasons = sorted(r for _, r in res.lost)
    assert len(reasons) == 2 and all("no vxlan port" in r or "no gre port" in r for r in reasons), reasons
    assert "lost in the underlay" in str(res.trace)


def test_fixed_key_ports_only_take_their_key():
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b")], repeater(5, [10])),
        host("b", [tunnel("to-a", 20, "b", "a", key="6")], repeater(0, [])),
    ])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))
    assert res.deliveries == [] and len(res.lost) == 1
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b", key="6")], repeater(5, [10])),  # key=6 wins over tun_id
        host("b", [tunnel("to-a", 20, "b", "a", key="6")], repeater(0, [])),
    ])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))
    assert [e.tun_id for e in res.tunnel_hops] == [6] and res.delivered_to() == [("b", "vm")]


def test_unknown_remote_vtep_is_lost():
    fab = Fabric([host("a", [tunnel("to-b", 10, "a", "b")], repeater(5, [10]))])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))
    assert [r for _, r in res.lost] == ["no host has VTEP 192.0.2.2"]


def test_forwarding_loop_between_hosts_is_an_error():
    bounce = [Flow.make(0, 2, {"in_port": 1}, [Output(10)]), Flow.make(0, 1, {}, [Output(IN_PORT)])]
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b")], bounce),
        host("b", [tunnel("to-a", 10, "b", "a")], bounce),
    ])
    with pytest.raises(EvaluationError, match="loop"):
        fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))


def test_goto_after_output_sees_later_changes_only():
    flows = [Flow.make(0, 1, {}, [Output(10), SetField("tun_id", 9), GotoTable(1)]),
             Flow.make(1, 1, {"tun_id": 9}, [Output(11)])]
    fab = Fabric([
        host("a", [tunnel("to-b", 10, "a", "b"), tunnel("to-c", 11, "a", "c")], flows),
    ])
    res = fab.inject("a", "vm", Frame.ethernet("02:00:00:00:00:01", BROADCAST))
    assert [(e.port, e.tun_id) for e in res.tunnel_hops] == [("to-b", 0), ("to-c", 9)]


# -- the frame model ------------------------------------------------------------------------


def test_vlan_tci_reads_and_writes_like_ovs():
    f = Frame.ethernet("02:00:00:00:00:01", BROADCAST)
    assert f.get("vlan_tci") == 0 and f.get("dl_vlan") is None
    t = f.set("vlan_tci", 0x1005)
    assert t.vlan == 5 and t.get("vlan_tci") == 0x1005 and t.get("dl_vlan") == 5
    assert t.set("vlan_tci", 0).vlan is None  # load:0->NXM_OF_VLAN_TCI[] strips the header
    assert t.set("vlan_tci", 0x0007).vlan is None  # no CFI bit: no header
    assert t.set("vlan_vid", 0x1009).vlan == 9 and t.set("vlan_vid", 9).vlan == 9


def test_arp_fields_only_on_arp_frames():
    arp = Frame.arp_request("02:00:00:00:00:01", "198.51.100.1", "198.51.100.2")
    assert arp.get("arp_op") == 1 and arp.get("arp_tpa") == 0xC6336402
    assert arp.get("arp_sha") == mac("02:00:00:00:00:01") and arp.get("dl_type") == 0x0806
    ip = Frame.ethernet("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert ip.get("arp_op") is None and ip.get("arp_tpa") is None
    reply = Frame.arp_reply("02:00:00:00:00:02", "198.51.100.2", "02:00:00:00:00:01", "198.51.100.1")
    assert (reply.arp_op, reply.eth_dst, reply.arp_tha) == (2, mac("02:00:00:00:00:01"), mac("02:00:00:00:00:01"))
    assert "is-at" in str(reply) and "who-has" in str(arp)


def test_unmodelled_field_is_an_error():
    with pytest.raises(KeyError, match="unknown field 'tcp_dst'"):
        Frame.ethernet("02:00:00:00:00:01", BROADCAST).get("tcp_dst")
    assert Frame.ethernet("02:00:00:00:00:01", BROADCAST).get("nw_ttl") is None  # modelled, not IP
