"""The field registry is consistent, and everything derived from it agrees with it and with Ryu."""

from __future__ import annotations

import pytest

from ovsflow import flow as F
from ovsflow.evaluator import Bridge, EvaluationError, Host, check_flow
from ovsflow.fields import (
    ETH_TYPE_IP,
    FIELDS,
    IPPROTO_ICMP,
    MATCH_FIELDS,
    SET_FIELDS,
    field,
    format_value,
    parse_value,
)
from ovsflow.packet import Frame
from ovsflow.pipeline import Pipelines
from ovsflow.program import BridgeProgram, HostProgram, PortConfig


def test_registry_is_consistent() -> None:
    assert len({f.set_name for f in FIELDS.values() if f.set_name}) == len(SET_FIELDS)
    oxms = [f.oxm[:2] for f in FIELDS.values() if f.oxm]
    assert len(oxms) == len(set(oxms)), "two fields share an OXM header"
    nxms = [f.nxm for f in FIELDS.values() if f.nxm]
    assert len(nxms) == len(set(nxms)), "two fields share an NXM name"
    codes = [f.nxm_code for f in FIELDS.values() if f.nxm_code]
    assert len(codes) == len(set(codes)) == len(nxms), "every NXM name has its own (class, number)"
    for f in FIELDS.values():
        if f.nxm_code:  # NXM_OF_* is class 0, NXM_NX_* class 1
            assert f.nxm_code[0] == (0 if f.nxm.startswith("NXM_OF_") else 1), f  # type: ignore[union-attr]
    for f in FIELDS.values():
        assert f.kind in ("port", "hex", "int", "mac", "ipv4", "ipv6"), f
        assert all(need in FIELDS for need, _ in f.prereqs), f
        if f.oxm:
            assert f.oxm[2] * 8 >= f.bits, f"{f.name}: {f.oxm[2]} bytes cannot hold {f.bits} bits"


def test_every_declared_match_field_is_registered() -> None:
    for pipeline in (Pipelines.load().int, Pipelines.load().tun):
        for table in pipeline.tables.values():
            assert table.match <= set(MATCH_FIELDS), (pipeline.role, table.name)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_values_print_and_parse_back(name: str) -> None:
    f = FIELDS[name]
    for value in (0, 1, (1 << f.bits) - 1):
        assert parse_value(f.kind, format_value(f.kind, value)) == value


@pytest.mark.parametrize("name", sorted(n for n, f in FIELDS.items() if f.frame))
def test_frame_reads_and_writes_every_registered_field(name: str) -> None:
    frame = Frame.ethernet("02:00:00:00:00:01", "02:00:00:00:00:02")
    value = (1 << FIELDS[name].bits) - 2
    assert frame.set(name, value).get(name) == value
    if FIELDS[name].set_name:
        assert frame.set(FIELDS[name].set_name, value).get(name) == value  # type: ignore[arg-type]


def test_ryu_knows_every_registered_ryu_name() -> None:
    """The registry's Ryu names are the ones Ryu 4.34's OXM/NXM tables have (the codec's test
    oracle builds messages with them)."""
    from ryu.ofproto import ofproto_v1_3 as ofp

    known = {f.name for f in ofp.oxm_types}
    for f in FIELDS.values():
        assert f.ryu_oxm is None or f.ryu_oxm in known, f.name
        assert f.ryu_nxm is None or f.ryu_nxm in known, f.name


def test_unknown_field_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown field 'nope'"):
        field("nope")


def _router_bridge(*flows: F.Flow) -> Host:
    ports = (PortConfig("vm1", 2), PortConfig("vm2", 3))
    return Host(HostProgram("h", "192.0.2.1", (BridgeProgram("br", "int", "netdev", 1, ports, flows, ()),), {}))


def test_dec_ttl_decrements_and_drops_an_expiring_frame() -> None:
    route = F.Flow.make(0, 1, {"dl_type": ETH_TYPE_IP, "nw_dst": 0xC6336402},
                        [F.DecTtl(), F.SetField("eth_src", 0x02AA00000001), F.Output(3)])
    host = _router_bridge(route)
    ping = Frame.icmp_echo("02:00:00:00:00:01", "02:aa:00:00:00:01", "198.51.100.1", "198.51.100.2", ttl=64)
    [out] = host.inject("vm1", ping).outputs
    assert (out.port, out.frame.nw_ttl, out.frame.eth_src, out.frame.icmp_type) == ("vm2", 63, 0x02AA00000001, 8)
    res = host.inject("vm1", Frame.icmp_echo("02:00:00:00:00:01", "02:aa:00:00:00:01", "198.51.100.1",
                                             "198.51.100.2", ttl=1))
    assert res.outputs == [] and any("TTL 1 expired" in n for n in res.trace.notes())
    assert host.inject("vm1", Frame.ipv4("02:00:00:00:00:01", "02:aa:00:00:00:01", "198.51.100.1",
                                         "198.51.100.9")).outputs == []  # no route: table miss drops


def test_ip_fields_need_their_prerequisites() -> None:
    with pytest.raises(EvaluationError, match="dec_ttl needs dl_type"):
        check_flow(F.Flow.make(0, 1, {}, [F.DecTtl()]))
    with pytest.raises(EvaluationError, match="match on icmp_type needs"):
        check_flow(F.Flow.make(0, 1, {"dl_type": ETH_TYPE_IP, "icmp_type": 8}, []))
    check_flow(F.Flow.make(0, 1, {"dl_type": ETH_TYPE_IP, "nw_proto": IPPROTO_ICMP, "icmp_type": 8},
                           [F.SetField("icmp_type", 0), F.SetField("ip_src", 1), F.Move("nw_src", "nw_dst")]))
    Bridge("b", flows=[F.Flow.make(0, 1, {"dl_type": ETH_TYPE_IP, "nw_ttl": 1}, [])])
