"""Routing between networks (routers in the topology): validation, the evaluator's property over random
topologies with routers, learn() never learning a router MAC, and every routed program loading into
a real ovs-vswitchd. The lab with real packets is tests/test_lab_routing.py."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import check_isolated, load_into_ovs, topologies

from ovsflow.compiler import compile_all
from ovsflow.evaluator import Fabric
from ovsflow.fields import BROADCAST, mac
from ovsflow.model import Topology, TopologyError, load_topology_data
from ovsflow.packet import Frame
from ovsflow.program import COOKIE_LEARNED


@st.composite
def routed_topologies(draw) -> dict:
    """A valid topology with up to two routers over its networks. Each router network gets its own
    /28 of 198.51.100.0/24 (so a router's subnets never overlap) and its ports addresses in it;
    the second router reuses the first one's subnets, as two tenants may."""
    data = draw(topologies())
    names = sorted(data["networks"])
    routers: dict[str, dict] = {}
    free = list(names)
    for r in range(draw(st.integers(1, 2))):
        if not free:
            break
        size = draw(st.integers(1, len(free)))
        nets, free = free[:size], free[size:]
        mode = draw(st.sampled_from(["distributed", "centralized"]))
        routers[f"r{r}"] = {"networks": nets, "mode": mode}
        if mode == "centralized":
            routers[f"r{r}"]["host"] = draw(st.sampled_from(sorted(data["hosts"])))
        for k, n in enumerate(nets):
            net = data["networks"][n]
            net["subnet"], net["gateway"] = f"198.51.100.{16 * k}/28", f"198.51.100.{16 * k + 1}"
            for p in data["ports"].values():
                if p["network"] == n:
                    p["ip"] = f"198.51.100.{16 * k + 1 + int(p['ip'].rsplit('.', 1)[1])}"
    data["routers"] = routers
    return data


def router_mac(topo: Topology, network: str) -> int | None:
    for r in topo.routers.values():
        if network in r.networks:
            return mac(r.mac(network))
    return None


def router_of(topo: Topology, network: str) -> str | None:
    return next((r.name for r in topo.routers.values() if network in r.networks), None)


@settings(max_examples=60, deadline=None)
@given(data=routed_topologies())
def test_frames_cross_networks_only_through_their_router(data: dict) -> None:
    topo = load_topology_data(data, "hypothesis")
    fabric = Fabric(compile_all(topo).values())
    rmacs = {m for n in topo.networks if (m := router_mac(topo, n)) is not None}
    for a, pa in sorted(topo.ports.items()):
        res = fabric.inject(pa.host, pa.iface, Frame.ethernet(pa.mac, BROADCAST, payload=f"bcast {a}"))
        check_isolated(topo, res, a, "broadcast")  # L2 stays in its network, routers or not
        gw_mac = router_mac(topo, pa.network)
        if gw_mac is None:
            continue
        gateway = topo.networks[pa.network].gateway
        res = fabric.inject(pa.host, pa.iface, Frame.arp_request(pa.mac, pa.ip, gateway, payload=f"arp gw {a}"))
        assert [(e.port, e.frame.eth_src, e.frame.arp_spa) for e in res.deliveries] == [
            (pa.iface, gw_mac, Frame.arp_request(pa.mac, pa.ip, gateway).arp_tpa)], res.trace
        assert not res.tunnel_hops, "gateway ARP must be answered on the sending host"
        mine = router_of(topo, pa.network)
        for ip in sorted({p.ip for p in topo.ports.values() if p.ip and p.ip != gateway}):
            res = fabric.inject(pa.host, pa.iface, Frame.icmp_echo(pa.mac, gw_mac, pa.ip, ip, ttl=9, payload=f"{a}>{ip}"))
            # the port with that address in another network of the same router, if any (IPs are unique
            # per network and a router's subnets do not overlap: at most one)
            want = [q for q in topo.ports.values()
                    if q.ip == ip and q.network != pa.network and router_of(topo, q.network) == mine]
            assert [(e.host, e.port) for e in res.deliveries] == [(q.host, q.iface) for q in want], f"{a}>{ip}\n{res.trace}"
            for e, q in zip(res.deliveries, want):
                assert (e.frame.nw_ttl, e.frame.eth_src, e.frame.eth_dst) == (8, router_mac(topo, q.network), mac(q.mac))
            assert not res.lost
    for h in fabric.hosts.values():  # the router MAC is a source on every routing host: never learned
        learned = [f for f in h.bridge("tun").flows() if f.cookie == COOKIE_LEARNED]
        assert not [f for f in learned if f.match_dict.get("dl_dst") in rmacs], learned


def test_ttl_one_is_dropped_and_counted() -> None:
    data = _two_network_topology("distributed")
    topo = load_topology_data(data, "t")
    fabric = Fabric(compile_all(topo).values())
    a, b = topo.ports["a"], topo.ports["b"]
    res = fabric.inject(a.host, a.iface, Frame.icmp_echo(a.mac, router_mac(topo, "web"), a.ip, b.ip, ttl=1))
    assert res.deliveries == [] and res.tunnel_hops == []
    drops = [e for e in fabric.hosts[a.host].bridge("int").entries() if e.flow.match_dict.get("nw_ttl") == 1]
    assert [e.n_packets for e in drops] == [1]


def _two_network_topology(mode: str) -> dict:
    return {
        "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}, "hv3": {"vtep": "192.0.2.13"}},
        "networks": {"web": {"vni": 5000, "subnet": "198.51.100.0/26", "gateway": "198.51.100.1"},
                     "db": {"vni": 6000, "subnet": "198.51.100.64/26", "gateway": "198.51.100.65", "mode": "l2pop"}},
        "routers": {"r1": {"networks": ["web", "db"], "mode": mode, **({"host": "hv3"} if mode == "centralized" else {})}},
        "ports": {"a": {"host": "hv1", "network": "web", "mac": "02:00:00:00:50:01", "ip": "198.51.100.10"},
                  "b": {"host": "hv2", "network": "db", "mac": "02:00:00:00:60:01", "ip": "198.51.100.70"}},
    }


@pytest.mark.parametrize("change, message", [
    (lambda d: d["routers"]["r1"]["networks"].append("nope"), "routers.r1.networks: unknown network (nope)"),
    (lambda d: d["networks"]["db"].pop("gateway"), "routers.r1.networks: network db needs a subnet and a gateway"),
    (lambda d: d["networks"]["db"].update(subnet="198.51.100.0/25", gateway="198.51.100.100"),
     "routers.r1.networks: subnet of db overlaps subnet of web (198.51.100.0/26)"),
    (lambda d: d["routers"].update(r2={"networks": ["db"]}), "routers.r2.networks: network db already joins router r1"),
    (lambda d: d["routers"]["r1"].update(mode="centralized"), "routers.r1.host: a centralized router needs the host"),
    (lambda d: d["routers"]["r1"].update(mode="centralized", host="hv9"), "routers.r1.host: unknown host (hv9)"),
    (lambda d: d["routers"]["r1"].update(host="hv1"), "routers.r1.host: only a centralized router has a host"),
    (lambda d: d["routers"]["r1"].update(macs={"web": "02:00:00:00:50:01"}),
     "routers.r1.macs.web: router MAC already used in network web by port a (02:00:00:00:50:01)"),
    (lambda d: d["routers"]["r1"].update(macs={"web": "01:00:00:00:00:01"}), "routers.r1.macs.web: a router MAC must be a unicast"),
    (lambda d: d["routers"]["r1"].update(macs={"other": "02:00:00:00:00:99"}), "routers.r1.macs.other: not one of the router's networks"),
    (lambda d: d["routers"]["r1"].update(mode="sideways"), "routers.r1.mode: must be one of"),
    (lambda d: d["routers"]["r1"].update(networks=[]), "routers.r1.networks:"),
    (lambda d: d["ports"]["a"].update(ip="198.51.100.1"), "ports.a.ip: is the gateway of network web"),
])
def test_router_validation_is_one_line_per_problem(change, message: str) -> None:
    data = _two_network_topology("distributed")
    change(data)
    with pytest.raises(TopologyError) as err:
        load_topology_data(data, "t.yaml")
    assert any(line.startswith(f"t.yaml: {message}") for line in str(err.value).splitlines()), str(err.value)


def test_different_routers_may_reuse_subnets() -> None:
    data = _two_network_topology("distributed")
    data["networks"]["other"] = {"vni": 7000, "subnet": "198.51.100.0/26", "gateway": "198.51.100.1"}
    data["routers"]["r2"] = {"networks": ["other"]}
    data["ports"]["x"] = {"host": "hv2", "network": "other", "mac": "02:00:00:00:70:01", "ip": "198.51.100.10"}
    topo = load_topology_data(data, "t")
    fabric = Fabric(compile_all(topo).values())
    b = topo.ports["b"]  # db's port pings web's address 198.51.100.10, which x in r2's network also has
    res = fabric.inject(b.host, b.iface, Frame.icmp_echo(b.mac, router_mac(topo, "db"), b.ip, "198.51.100.10"))
    assert [e.port for e in res.deliveries] == ["tapa"], res.trace


@pytest.mark.ovs
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=routed_topologies())
def test_every_routed_program_loads_into_ovs(ovs, data: dict) -> None:
    topo = load_topology_data(copy.deepcopy(data), "hypothesis")
    with tempfile.TemporaryDirectory(dir=ovs.workdir) as tmp:
        for program in compile_all(topo, "netdev").values():
            load_into_ovs(ovs, program, Path(tmp))
