"""Scenario tests: the seed-003 topology compiled, then frames pushed through every host.

Three hosts, two tenants (blue, red) with one VM each per host, same MACs and IPs in both tenants.
Variants: all VXLAN, all GRE, blue VXLAN + red GRE. Frames go through the compiled br-int/br-tun of
every host (ovsflow.evaluator.Fabric), learn() included, so these tests check what the compiled
program does, not what it looks like.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ovsflow.compiler import compile_host
from ovsflow.evaluator import Fabric, FabricResult
from ovsflow.model import Topology, load_topology, load_topology_data, read_document
from ovsflow.packet import BROADCAST, Frame, mac
from ovsflow.program import COOKIE_LEARNED, TUNNEL_TYPES

DATA = Path(__file__).parent / "data"
VARIANTS = ["seed003-vxlan.yaml", "seed003-gre.yaml", "seed003-mixed.yaml"]


def fabric_of(topo: Topology) -> Fabric:
    return Fabric(compile_host(topo, h) for h in sorted(topo.hosts))


class Scenario:
    """A topology, its fabric, and helpers that speak in topology port names."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.fabric = fabric_of(topo)
        self.by_iface = {(p.host, p.iface): p.name for p in topo.ports.values()}

    def send(self, port: str, frame: Frame) -> FabricResult:
        p = self.topo.ports[port]
        res = self.fabric.inject(p.host, p.iface, frame)
        assert not res.trace.ambiguities, f"same-priority overlap:\n{res.trace}"
        return res

    def arp_request(self, src: str, dst: str, payload: str = "") -> FabricResult:
        s, d = self.topo.ports[src], self.topo.ports[dst]
        return self.send(src, Frame.arp_request(s.mac, s.ip, d.ip, payload=payload or f"{src}?{dst}"))

    def arp_reply(self, src: str, dst: str) -> FabricResult:
        s, d = self.topo.ports[src], self.topo.ports[dst]
        return self.send(src, Frame.arp_reply(s.mac, s.ip, d.mac, d.ip, payload=f"{src}!{dst}"))

    def unicast(self, src: str, dst: str) -> FabricResult:
        s, d = self.topo.ports[src], self.topo.ports[dst]
        return self.send(src, Frame.ethernet(s.mac, d.mac, payload=f"{src}>{dst}"))

    def receivers(self, res: FabricResult) -> list[str]:
        """Topology port names that got the frame (sorted, duplicates kept)."""
        return sorted(self.by_iface.get((e.host, e.port), f"?{e.host}:{e.port}")
                      for e in res.deliveries)

    def peers(self, port: str) -> list[str]:
        """The other ports of `port`'s network: who must get its broadcasts."""
        net = self.topo.ports[port].network
        return sorted(p.name for p in self.topo.ports.values() if p.network == net and p.name != port)

    def tunnel_summary(self, res: FabricResult) -> list[tuple[str, str, str, int]]:
        """(from host, to VTEP, type, key) of every tunnel hop, sorted."""
        return sorted((e.host, e.remote_ip, e.type, e.tun_id) for e in res.tunnel_hops)  # type: ignore[misc]


@pytest.fixture(params=VARIANTS)
def seed(request) -> Scenario:
    return Scenario(load_topology(DATA / request.param))


def seed_without(variant: str, port: str) -> Scenario:
    """The seed topology with one port removed, so one tenant is not on every host."""
    data = copy.deepcopy(read_document(DATA / variant))
    del data["ports"][port]
    return Scenario(load_topology_data(data, source=f"{variant} minus {port}"))


def expected_flood(sc: Scenario, port: str) -> list[tuple[str, str, str, int]]:
    topo = sc.topo
    p = topo.ports[port]
    net = topo.networks[p.network]
    hosts = {q.host for q in topo.ports.values() if q.network == net.name} - {p.host}
    return sorted((p.host, topo.hosts[h].vtep, net.tunnel, net.vni) for h in hosts)


# ---------------------------------------------------------------------------------------------


def test_every_host_compiles_and_evaluator_accepts_every_flow(seed: Scenario):
    # Fabric() re-checks each flow as OVS would refuse it (goto forward, VLAN consistency, ...).
    for h in seed.fabric.hosts.values():
        tun, int_ = h.bridge("tun"), h.bridge("int")
        assert tun.flows() and int_.flows()
        assert all(f.cookie for b in (tun, int_) for f in b.flows()), "every flow needs a cookie"


@pytest.mark.parametrize("port", ["blue1", "blue2", "blue3", "red1", "red2", "red3"])
def test_broadcast_reaches_exactly_its_tenant_with_the_right_key(seed: Scenario, port: str):
    res = seed.arp_request(port, seed.peers(port)[0])
    assert seed.receivers(res) == seed.peers(port), res.trace
    assert seed.tunnel_summary(res) == expected_flood(seed, port), res.trace
    assert not res.lost, res.lost
    for e in res.deliveries:
        assert e.frame.vlan is None, f"VM got a tagged frame: {e}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_broadcast_goes_only_to_vteps_hosting_the_tenant(variant: str):
    sc = seed_without(variant, "red3")  # hv3 hosts no red VM now
    res = sc.arp_request("red1", "red2")
    assert seed_hosts(sc, res) == ["192.0.2.12"], res.trace
    assert sc.receivers(res) == ["red2"], res.trace
    res = sc.arp_request("blue1", "blue2")  # blue still floods to both
    assert seed_hosts(sc, res) == ["192.0.2.12", "192.0.2.13"], res.trace
    assert sc.receivers(res) == ["blue2", "blue3"], res.trace


def seed_hosts(sc: Scenario, res: FabricResult) -> list[str]:
    return sorted(e.remote_ip for e in res.tunnel_hops)  # type: ignore[misc]


def tunnel_ports(sc: Scenario, host: str) -> list:
    return [p for p in sc.fabric.hosts[host].bridge("tun").ports.values() if p.type in TUNNEL_TYPES]


def test_unknown_tunnel_key_is_dropped_on_every_tunnel_port(seed: Scenario):
    used = {n.vni for n in seed.topo.networks.values()}
    for host in seed.fabric.hosts.values():
        for tp in tunnel_ports(seed, host.name):
            for key in (0, 0x999, max(used) + 1):
                assert key not in used
                frame = Frame(mac("02:00:00:00:00:09"), BROADCAST, tun_id=key, payload="stray")
                r = host.inject_ofport(host.bridge("tun").name, tp.ofport, frame)
                assert r.outputs == [] and r.learned == [], r.trace


@pytest.mark.parametrize("variant", VARIANTS)
def test_key_of_a_tenant_not_on_the_host_is_dropped(variant: str):
    sc = seed_without(variant, "red3")
    red = sc.topo.networks["red"]
    hv3 = sc.fabric.hosts["hv3"]
    for tp in tunnel_ports(sc, "hv3"):
        frame = Frame(mac("02:00:00:00:00:01"), BROADCAST, tun_id=red.vni)
        r = hv3.inject_ofport(hv3.bridge("tun").name, tp.ofport, frame)
        assert r.outputs == [] and r.learned == [], r.trace


def test_key_of_the_other_tunnel_type_is_dropped():
    # Mixed: blue is VXLAN, red is GRE. Blue's VNI arriving over GRE (or red's over VXLAN) is foreign.
    sc = Scenario(load_topology(DATA / "seed003-mixed.yaml"))
    nets = sc.topo.networks
    hv2 = sc.fabric.hosts["hv2"]
    for tp in tunnel_ports(sc, "hv2"):
        foreign = [n.vni for n in nets.values() if n.tunnel != tp.type]
        assert foreign
        for key in foreign:
            r = hv2.inject_ofport(hv2.bridge("tun").name, tp.ofport,
                                  Frame(mac("02:00:00:00:00:01"), BROADCAST, tun_id=key))
            assert r.outputs == [] and r.learned == [], r.trace


def test_another_tenants_key_reaches_only_that_tenant(seed: Scenario):
    # A frame with red's key is red's, whatever MAC it carries (blue1 and red1 share theirs).
    red = seed.topo.networks["red"]
    hv2 = seed.fabric.hosts["hv2"]
    tp = next(p for p in tunnel_ports(seed, "hv2")
              if p.type == red.tunnel and dict(p.options)["remote_ip"] == "192.0.2.11")
    r = hv2.inject_ofport(hv2.bridge("tun").name, tp.ofport,
                          Frame(mac("02:00:00:00:00:01"), BROADCAST, tun_id=red.vni))
    assert [seed.by_iface[("hv2", e.port)] for e in r.outputs] == ["red2"], r.trace


@pytest.mark.parametrize("ofport", [0, 4242, 0xFFFFFF00 - 1])
def test_frames_from_unknown_ports_are_dropped(seed: Scenario, ofport: int):
    for host in seed.fabric.hosts.values():
        for role in ("tun", "int"):
            b = host.bridge(role)
            assert ofport not in b.ports
            for frame in (Frame(mac("02:00:00:00:00:01"), BROADCAST, tun_id=0x65),
                          Frame(mac("02:00:00:00:00:01"), BROADCAST, vlan=host.program.local_vlans["blue"])):
                r = host.inject_ofport(b.name, ofport, frame)
                assert r.outputs == [] and r.learned == [], r.trace


def test_vm_cannot_spoof_its_mac_or_send_tagged_frames(seed: Scenario):
    p = seed.topo.ports["blue1"]
    hv1 = seed.fabric.hosts["hv1"]
    red_vlan = hv1.program.local_vlans["red"]
    spoofed = Frame.arp_request("02:00:00:00:00:77", p.ip, "198.51.100.2")
    assert seed.send("blue1", spoofed).deliveries == []
    for vlan in (red_vlan, hv1.program.local_vlans["blue"], 0):
        tagged = Frame.arp_request(p.mac, p.ip, "198.51.100.2", vlan=vlan)
        res = seed.send("blue1", tagged)
        assert res.deliveries == [] and res.tunnel_hops == [], res.trace


def converse(sc: Scenario, a: str, b: str) -> dict[str, FabricResult]:
    """ARP request a->b (flooded), reply b->a, then a unicast each way."""
    return {
        "request": sc.arp_request(a, b),
        "reply": sc.arp_reply(b, a),
        "a>b": sc.unicast(a, b),
        "b>a": sc.unicast(b, a),
    }


@pytest.mark.parametrize("a, b", [("blue1", "blue2"), ("red3", "red1"), ("blue2", "blue3")])
def test_after_learning_unicast_takes_exactly_one_tunnel(seed: Scenario, a: str, b: str):
    pa, pb = seed.topo.ports[a], seed.topo.ports[b]
    net = seed.topo.networks[pa.network]
    vtep = seed.topo.hosts
    # Before anything is learned, unicast to b floods its tenant (b's host is one of them).
    flood = seed.unicast(a, b)
    assert seed.receivers(flood).count(b) == 1
    conv = converse(seed, a, b)
    one = [("reply", b, a), ("a>b", a, b), ("b>a", b, a)]
    for step, src, dst in one:
        res = conv[step]
        ps, pd = seed.topo.ports[src], seed.topo.ports[dst]
        assert seed.tunnel_summary(res) == [(ps.host, vtep[pd.host].vtep, net.tunnel, net.vni)], \
            f"{step}:\n{res.trace}"
        assert seed.receivers(res) == [dst], f"{step}:\n{res.trace}"
    # What was learned: on b's host, a's MAC; on a's host, b's MAC; all with the learned cookie.
    learned = {(h, f.match_dict["dl_dst"]) for h, f in conv["request"].learned + conv["reply"].learned}
    assert (pb.host, mac(pa.mac)) in learned and (pa.host, mac(pb.mac)) in learned
    assert all(f.cookie == COOKIE_LEARNED for _, f in conv["request"].learned + conv["reply"].learned)


def test_learned_entries_expire_and_unicast_floods_again(seed: Scenario):
    converse(seed, "blue1", "blue2")
    assert len(seed.unicast("blue1", "blue2").tunnel_hops) == 1
    hard = seed.topo.networks["blue"].hard_timeout
    assert hard > 0
    seed.fabric.advance(hard - 1)
    assert len(seed.unicast("blue1", "blue2").tunnel_hops) == 1
    expired = seed.fabric.advance(1)
    assert expired and all(f.cookie == COOKIE_LEARNED for _, f in expired)
    res = seed.unicast("blue1", "blue2")
    assert len(res.tunnel_hops) == 2, res.trace  # flooded to hv2 and hv3 again
    assert seed.receivers(res) == ["blue2"]  # hv3's br-int drops a unicast for nobody there


def test_overlapping_tenants_never_see_each_others_frames(seed: Scenario):
    """Both tenants talk at once, with the same MACs and IPs; every frame stays in its tenant."""
    every: list[tuple[str, str, FabricResult]] = []
    pairs = [("blue1", "blue2"), ("red1", "red2"), ("red2", "red3"), ("blue3", "blue1"),
             ("red3", "red1"), ("blue2", "blue3")]
    for a, b in pairs:
        for step, res in converse(seed, a, b).items():
            every.append((a if step in ("request", "a>b") else b, step, res))
    for a in ("blue1", "red1", "blue2", "red2"):  # broadcasts after everything is learned
        every.append((a, "late broadcast", seed.arp_request(a, "blue3" if "blue" in a else "red3")))
    for sender, step, res in every:
        net = seed.topo.ports[sender].network
        vni = seed.topo.networks[net].vni
        got = seed.receivers(res)
        assert got, f"{sender} {step}: delivered nowhere\n{res.trace}"
        assert all(seed.topo.ports[r].network == net for r in got), f"{sender} {step}:\n{res.trace}"
        assert len(got) == len(set(got)), f"{sender} {step}: duplicate delivery\n{res.trace}"
        assert all(e.tun_id == vni for e in res.tunnel_hops), f"{sender} {step}:\n{res.trace}"
        assert not res.lost, res.lost
    # And learning kept the tenants apart: each host's learned table 20 entries per tenant VLAN.
    for h in seed.fabric.hosts.values():
        vlans = set(h.program.local_vlans.values())
        for f in h.bridge("tun").flows(cookie=COOKIE_LEARNED):
            vid = f.match_dict["vlan_tci"][0] & 0xFFF  # type: ignore[index]
            assert vid in vlans, f
