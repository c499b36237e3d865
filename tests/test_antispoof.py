"""Anti-spoofing in br-int (ovsflow/compiler/antispoof.py), over random topologies (hypothesis).

A frame from a VM with any source MAC or IP other than its own (or allowed) reaches nobody: no
port receives it, no tunnel carries it, no gateway answers it; with and without routers. The
same frames from the VM's own or allowed addresses still reach their peers. Plus the validation
of `allowed_addresses` and the link-local address the check derives from a MAC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import check_isolated, topologies
from test_routing import routed_topologies, router_mac

from ovsflow.compiler import compile_all
from ovsflow.evaluator import Fabric, FabricResult
from ovsflow.fields import BROADCAST, ETH_TYPE_IPV6, ICMP_ECHO_REQUEST, ND_ADVERT, mac
from ovsflow.model import Port, Topology, TopologyError, load_topology_data
from ovsflow.packet import Frame
from ovsflow.port_security import link_local


@st.composite
def with_allowed(draw, base) -> dict:
    """A topology from `base` where some ports with an IPv4 address also get an allowed address
    (another address of their subnet: a VRRP-style virtual IP) or an IPv6 address."""
    data = draw(base)
    for p in data["ports"].values():
        if draw(st.booleans()):
            ip = ipaddress.IPv4Address(p["ip"])
            subnet = ipaddress.IPv4Network(data["networks"][p["network"]]["subnet"])
            gateway = data["networks"][p["network"]].get("gateway")
            hosts = [str(a) for a in subnet.hosts() if a != ip and str(a) != gateway]
            p["allowed_addresses"] = [draw(st.sampled_from(hosts))]
        if draw(st.booleans()):
            p["ipv6"] = f"2001:db8::{int(p['mac'].rsplit(':', 1)[1], 16):x}"
    return data


def allowed_v4(p: Port) -> set[ipaddress.IPv4Address]:
    return {ipaddress.IPv4Address(a) for a in (p.ip, *p.allowed_addresses) if a and ":" not in a}


def allowed_v6(p: Port) -> set[ipaddress.IPv6Address]:
    return {link_local(p.mac), *(ipaddress.IPv6Address(a) for a in (p.ipv6, *p.allowed_addresses) if a and ":" in a)}


def nobody(res: FabricResult, what: str) -> None:
    assert not res.deliveries and not res.tunnel_hops, f"{what}: reached {res.deliveries} {res.tunnel_hops}\n{res.trace}"


def neighbour_advert(src_mac: str, src_ip: str, target: str, tll: str) -> Frame:
    ns = Frame.neighbour_solicitation(src_mac, src_ip, target)
    return replace(ns, eth_dst=0x333300000001, ipv6_dst=int(ipaddress.IPv6Address("ff02::1")), icmpv6_type=ND_ADVERT,
                   nd_sll=None, nd_tll=mac(tll), nd_options_type=2)


def ipv6_frame(src_mac: str, dst_mac: int, src_ip: str, dst_ip: str) -> Frame:
    return Frame(mac(src_mac), dst_mac, ETH_TYPE_IPV6, ipv6_src=int(ipaddress.IPv6Address(src_ip)),
                 ipv6_dst=int(ipaddress.IPv6Address(dst_ip)), nw_proto=17, nw_ttl=64)


def spoof_checks(topo: Topology, fabric: Fabric, spoof4: str, spoof6: str, spoof_mac: str) -> None:
    for a, pa in sorted(topo.ports.items()):
        peers = sorted(q for q in topo.ports if q != a and topo.ports[q].network == pa.network)

        def send(frame: Frame, pa: Port = pa) -> FabricResult:
            return fabric.inject(pa.host, pa.iface, frame)

        # own addresses still work: broadcast IPv4 and ARP from each allowed address reach every peer
        for ip in sorted(allowed_v4(pa)):
            res = send(Frame.ipv4(pa.mac, BROADCAST, str(ip), "198.51.100.255", payload=f"own {a} {ip}"))
            assert check_isolated(topo, res, a, f"IPv4 from allowed {ip}") == peers, res.trace
            res = send(Frame.arp_request(pa.mac, str(ip), "198.51.100.254"))
            assert check_isolated(topo, res, a, f"ARP from allowed {ip}") == peers, res.trace
        for ip6 in sorted(allowed_v6(pa)):
            res = send(ipv6_frame(pa.mac, BROADCAST, str(ip6), "ff02::1"))
            assert check_isolated(topo, res, a, f"IPv6 from allowed {ip6}") == peers, res.trace
        v4, v6 = {str(x) for x in allowed_v4(pa)}, {str(x) for x in allowed_v6(pa)}
        own_v4 = pa.ip or "0.0.0.0"
        gw = router_mac(topo, pa.network)
        dsts = [BROADCAST, *(mac(topo.ports[q].mac) for q in peers)] + ([gw] if gw is not None else [])
        frames: list[tuple[str, Frame]] = []
        if spoof4 not in v4:
            for d in dsts:
                frames.append(("IPv4 from a spoofed address", Frame.ipv4(pa.mac, d, spoof4, "198.51.100.200")))
                frames.append(("ping from a spoofed address", replace(
                    Frame.icmp_echo(pa.mac, d, spoof4, "198.51.100.1"), icmp_type=ICMP_ECHO_REQUEST)))
            if spoof4 != "0.0.0.0":  # an ARP probe (RFC 5227) may come from 0.0.0.0
                frames.append(("ARP with a spoofed sender address", Frame.arp_request(pa.mac, spoof4, "198.51.100.1")))
            if gw is not None and spoof4 != "0.0.0.0":
                gateway = topo.networks[pa.network].gateway or ""
                frames.append(("gateway ARP from a spoofed address", Frame.arp_request(pa.mac, spoof4, gateway)))
        if spoof_mac != pa.mac:
            frames.append(("ARP with a spoofed sender MAC", replace(Frame.arp_request(pa.mac, own_v4, "198.51.100.1"),
                                                                    arp_sha=mac(spoof_mac))))
        if spoof6 not in v6:
            frames.append(("IPv6 from a spoofed address", ipv6_frame(pa.mac, BROADCAST, spoof6, "ff02::1")))
            frames.append(("NS from a spoofed address", Frame.neighbour_solicitation(pa.mac, spoof6, "2001:db8::77")))
            frames.append(("NA for a foreign target", neighbour_advert(pa.mac, spoof6, spoof6, pa.mac)))
        own6 = str(link_local(pa.mac))
        if spoof_mac != pa.mac:  # a MAC not its own, as ND option or source: every kind of frame
            frames.append(("NS with a spoofed SLL", replace(Frame.neighbour_solicitation(pa.mac, own6, "2001:db8::77"),
                                                            nd_sll=mac(spoof_mac))))
            frames.append(("NA with a spoofed TLL", neighbour_advert(pa.mac, own6, own6, spoof_mac)))
            for d in dsts:
                frames.append(("spoofed source MAC", Frame.ethernet(spoof_mac, d)))
                frames.append(("spoofed source MAC, own IP", Frame.ipv4(spoof_mac, d, own_v4, "198.51.100.200")))
            frames.append(("spoofed source MAC, ARP", Frame.arp_request(spoof_mac, own_v4, "198.51.100.1")))
        for what, frame in frames:
            nobody(send(replace(frame, payload=f"{what} {a}")), f"{what} from {a}")


ADDR4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))) | st.sampled_from(
    [f"198.51.100.{i}" for i in range(0, 40)])
ADDR6 = st.sampled_from(["2001:db8::1", "2001:db8::2", "fe80::1", "fe80::ff:fe00:1"]) | st.integers(1, 2**128 - 1).map(
    lambda i: str(ipaddress.IPv6Address(i)))
MACS = st.sampled_from([f"02:00:00:00:00:{i:02x}" for i in range(1, 9)] + ["0a:58:c6:33:64:01"])


@settings(max_examples=40, deadline=None)
@given(data=with_allowed(topologies()), spoof4=ADDR4, spoof6=ADDR6, spoof_mac=MACS)
def test_spoofed_frames_reach_nobody(data: dict, spoof4: str, spoof6: str, spoof_mac: str) -> None:
    topo = load_topology_data(data, "hypothesis")
    spoof_checks(topo, Fabric(compile_all(topo).values()), spoof4, spoof6, spoof_mac)


@settings(max_examples=40, deadline=None)
@given(data=with_allowed(routed_topologies()), spoof4=ADDR4, spoof6=ADDR6, spoof_mac=MACS)
def test_spoofed_frames_reach_nobody_routed(data: dict, spoof4: str, spoof6: str, spoof_mac: str) -> None:
    topo = load_topology_data(data, "hypothesis")
    fabric = Fabric(compile_all(topo).values())
    spoof_checks(topo, fabric, spoof4, spoof6, spoof_mac)
    for pa in topo.ports.values():  # routing from an allowed address works like from the own one
        gw = router_mac(topo, pa.network)
        for src in sorted(allowed_v4(pa)) if gw is not None else ():
            for q in topo.ports.values():
                if q.network != pa.network and q.ip and any(q.network in r.networks and pa.network in r.networks
                                                            for r in topo.routers.values()):
                    res = fabric.inject(pa.host, pa.iface, Frame.icmp_echo(pa.mac, gw, str(src), q.ip, ttl=9))
                    assert [(e.host, e.port) for e in res.deliveries] == [(q.host, q.iface)], res.trace


def test_port_without_addresses_is_checked_at_layer_2_only() -> None:
    data = {"hosts": {"hv1": {"vtep": "192.0.2.11"}}, "networks": {"n": {"vni": 5}},
            "ports": {"a": {"host": "hv1", "network": "n", "mac": "02:00:00:00:00:01"},
                      "b": {"host": "hv1", "network": "n", "mac": "02:00:00:00:00:02", "ip": "198.51.100.2"}}}
    topo = load_topology_data(data, "t")
    fabric = Fabric(compile_all(topo).values())
    res = fabric.inject("hv1", "tapa", Frame.ipv4("02:00:00:00:00:01", BROADCAST, "203.0.113.9", "203.0.113.255"))
    assert [e.port for e in res.deliveries] == ["tapb"]
    nobody(fabric.inject("hv1", "tapa", Frame.ipv4("02:00:00:00:00:09", BROADCAST, "203.0.113.9", "203.0.113.255")), "MAC")
    nobody(fabric.inject("hv1", "tapb", Frame.ipv4("02:00:00:00:00:02", BROADCAST, "203.0.113.9", "203.0.113.255")), "IP")
    # DHCP: a request from 0.0.0.0 to the broadcast address passes; other 0.0.0.0 sources do not
    res = fabric.inject("hv1", "tapb", Frame.transport("02:00:00:00:00:02", BROADCAST, "0.0.0.0", "255.255.255.255", 17, 68, 67))
    assert [e.port for e in res.deliveries] == ["tapa"]
    nobody(fabric.inject("hv1", "tapb", Frame.ipv4("02:00:00:00:00:02", BROADCAST, "0.0.0.0", "198.51.100.255")), "0.0.0.0")


def test_link_local_is_modified_eui64() -> None:
    assert str(link_local("02:00:00:00:01:01")) == "fe80::ff:fe00:101"
    assert str(link_local("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456"


@pytest.mark.parametrize(("entry", "message"), [
    ("198.51.100.300", "not an IPv4/IPv6 address or CIDR"),
    ("198.51.100.1/24", "not an IPv4/IPv6 address or CIDR"),
    ("203.0.113.5", "not inside subnet 198.51.100.0/24 of network n"),
    ("198.51.100.0/28", "covers the gateway of network n"),
    ("2001:db8::/48", "an IPv6 prefix must be /64 or longer"),
    ("ff02::1", "not a unicast address"),
])
def test_allowed_addresses_validation(entry: str, message: str) -> None:
    data = {"hosts": {"hv1": {"vtep": "192.0.2.11"}},
            "networks": {"n": {"vni": 5, "subnet": "198.51.100.0/24", "gateway": "198.51.100.1"}},
            "ports": {"a": {"host": "hv1", "network": "n", "mac": "02:00:00:00:00:01", "ip": "198.51.100.2",
                            "allowed_addresses": ["198.51.100.50", "198.51.100.64/30", entry]}}}
    with pytest.raises(TopologyError) as err:
        load_topology_data(data, "t")
    text = str(err.value)
    assert "ports.a.allowed_addresses.2" in text and message in text, text
    assert "allowed_addresses.0" not in text and "allowed_addresses.1" not in text, text
