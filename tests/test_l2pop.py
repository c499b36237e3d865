"""Issue 5, evaluator level: what L2 population does to frames, compared with flood-and-learn.

Seed 003 with blue in `mode: l2pop` (VXLAN, VNI 101) and red flood-and-learn (GRE, VNI 102), same
MACs and IPs in both tenants. Frames go through every host's compiled br-int/br-tun
(ovsflow.evaluator.Fabric), so these tests check what the compiled program does: ARP answered in the
switch with no frame on the underlay, unicast to the one right tunnel from the first frame on,
pre-populated entries beating learned ones, and broadcast replicated only to the VTEPs that host the
network.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ovsflow.compiler import compile_host
from ovsflow.evaluator import Fabric, FabricResult
from ovsflow.flow import Output
from ovsflow.model import Topology, load_topology_data, read_document
from ovsflow.packet import ARP_REPLY, ARP_REQUEST, BROADCAST, ETH_TYPE_ARP, Frame, ipv4, mac
from ovsflow.program import COOKIE_LEARNED, TUNNEL_TYPES

DATA = Path(__file__).parent / "data"
SEED = DATA / "seed003-l2pop.yaml"
UNKNOWN_IP = "198.51.100.77"  # in blue's subnet, no port has it

Hop = tuple[str, str, str, int]  # (from host, to VTEP, tunnel type, key)


class Scenario:
    """A topology and the fabric of its compiled hosts, driven by topology port names."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.fabric = Fabric(compile_host(topo, h) for h in sorted(topo.hosts))
        self.by_iface = {(p.host, p.iface): p.name for p in topo.ports.values()}

    def send(self, port: str, frame: Frame) -> FabricResult:
        p = self.topo.ports[port]
        res = self.fabric.inject(p.host, p.iface, frame)
        assert not res.trace.ambiguities, f"two flows tie at the same priority:\n{res.trace}"
        assert not res.lost, f"frames lost in the underlay: {res.lost}\n{res.trace}"
        return res

    def arp_request(self, src: str, target_ip: str) -> FabricResult:
        s = self.topo.ports[src]
        return self.send(src, Frame.arp_request(s.mac, s.ip, target_ip, payload=f"{src}?{target_ip}"))

    def unicast(self, src: str, dst: str) -> FabricResult:
        s, d = self.topo.ports[src], self.topo.ports[dst]
        return self.send(src, Frame.ethernet(s.mac, d.mac, payload=f"{src}>{dst}"))

    def receivers(self, res: FabricResult) -> list[str]:
        """Port names that got a frame, sorted, duplicates kept (a duplicate is a bug)."""
        return sorted(self.by_iface.get((e.host, e.port), f"?{e.host}:{e.port}") for e in res.deliveries)

    def vtep(self, host: str) -> str:
        return self.topo.hosts[host].vtep

    def tunnel_ofport(self, host: str, remote: str, type_: str) -> int:
        """The ofport of `host`'s br-tun tunnel of `type_` to `remote` (fails if there is none)."""
        want = self.vtep(remote)
        found = [p.ofport for p in self.fabric.hosts[host].bridge("tun").ports.values()
                 if p.type == type_ and dict(p.options).get("remote_ip") == want]
        assert len(found) == 1, f"{host}: expected one {type_} tunnel to {remote} ({want}), found {found}"
        return found[0]

    def expected_flood(self, port: str) -> list[Hop]:
        """One hop per other VTEP hosting `port`'s network, with the network's type and key."""
        p = self.topo.ports[port]
        net = self.topo.networks[p.network]
        hosts = {q.host for q in self.topo.ports.values() if q.network == net.name} - {p.host}
        return sorted((p.host, self.vtep(h), net.tunnel, net.vni) for h in hosts)


def hops(res: FabricResult) -> list[Hop]:
    return sorted((e.host, e.remote_ip, e.type, e.tun_id) for e in res.tunnel_hops)  # type: ignore[misc]


def seed_data() -> dict:
    return copy.deepcopy(read_document(SEED))


@pytest.fixture
def seed() -> Scenario:
    return Scenario(load_topology_data(seed_data(), source=str(SEED)))


def test_the_seed_is_what_these_tests_assume(seed: Scenario):
    nets = seed.topo.networks
    assert (nets["blue"].mode, nets["blue"].tunnel, nets["blue"].vni) == ("l2pop", "vxlan", 101)
    assert (nets["red"].mode, nets["red"].tunnel, nets["red"].vni) == ("learn", "gre", 102)
    assert {p.name: p.host for p in seed.topo.ports.values() if p.network == "blue"} == \
        {"blue1": "hv1", "blue2": "hv2", "blue3": "hv3"}


# --- 1. ARP answered in the switch ------------------------------------------------------------

BLUE_PAIRS = [(a, b) for a in ("blue1", "blue2", "blue3") for b in ("blue1", "blue2", "blue3") if a != b]


@pytest.mark.parametrize("asker, target", BLUE_PAIRS)
def test_l2pop_arp_for_a_remote_vm_is_answered_locally_and_never_reaches_the_underlay(
        seed: Scenario, asker: str, target: str):
    a, t = seed.topo.ports[asker], seed.topo.ports[target]
    res = seed.arp_request(asker, t.ip)
    assert res.tunnel_hops == [], f"ARP crossed the underlay in an l2pop network:\n{res.trace}"
    assert seed.receivers(res) == [asker], f"only the asker may get a frame (the reply):\n{res.trace}"
    reply = res.deliveries[0].frame
    assert reply.ethertype == ETH_TYPE_ARP and reply.arp_op == ARP_REPLY, reply
    assert (reply.eth_src, reply.eth_dst) == (mac(t.mac), mac(a.mac)), reply
    assert (reply.arp_sha, reply.arp_spa) == (mac(t.mac), ipv4(t.ip)), reply
    assert (reply.arp_tha, reply.arp_tpa) == (mac(a.mac), ipv4(a.ip)), reply
    assert reply.vlan is None, f"VM got a tagged reply: {reply}"
    # The answer came from the asker's own br-tun ARP responder (table 21), nowhere else.
    assert {h for h, b, t21, f in res.trace.hits() if t21 == 21 and f is not None} == {a.host}, f"\n{res.trace}"


def test_learn_mode_arp_for_a_remote_vm_floods_to_every_remote_vtep(seed: Scenario):
    res = seed.arp_request("red1", seed.topo.ports["red2"].ip)
    assert hops(res) == [("hv1", "192.0.2.12", "gre", 102), ("hv1", "192.0.2.13", "gre", 102)], f"\n{res.trace}"
    assert seed.receivers(res) == ["red2", "red3"], f"\n{res.trace}"
    for e in res.deliveries:  # the request itself, not an answer from a switch
        assert (e.frame.arp_op, e.frame.eth_dst) == (ARP_REQUEST, BROADCAST), e


def test_l2pop_arp_for_a_vm_on_the_same_host_is_delivered_once_and_not_tunnelled():
    data = seed_data()
    data["ports"]["blue4"] = {"host": "hv1", "network": "blue", "mac": "02:00:00:00:00:04", "ip": "198.51.100.4"}
    sc = Scenario(load_topology_data(data, source="seed003-l2pop + blue4 on hv1"))
    res = sc.arp_request("blue1", "198.51.100.4")
    assert res.tunnel_hops == [], f"\n{res.trace}"
    assert sc.receivers(res) == ["blue4"], f"\n{res.trace}"  # br-int's copy; br-tun answers nothing for it
    assert res.deliveries[0].frame.arp_op == ARP_REQUEST


# --- 2. unknown IPs still flood ---------------------------------------------------------------


@pytest.mark.parametrize("asker", ["blue1", "blue2", "blue3"])
def test_l2pop_arp_for_an_unknown_ip_floods_once_per_remote_vtep(seed: Scenario, asker: str):
    res = seed.arp_request(asker, UNKNOWN_IP)
    assert hops(res) == seed.expected_flood(asker), f"\n{res.trace}"
    assert len(hops(res)) == 2 and all(h[2:] == ("vxlan", 101) for h in hops(res)), f"\n{res.trace}"
    others = sorted({"blue1", "blue2", "blue3"} - {asker})
    assert seed.receivers(res) == others, f"\n{res.trace}"
    for e in res.deliveries:
        assert (e.frame.arp_op, e.frame.arp_tpa) == (ARP_REQUEST, ipv4(UNKNOWN_IP)), e


# --- 3. unicast: pre-populated from the first frame, above anything learned -------------------


@pytest.mark.parametrize("src, dst", BLUE_PAIRS)
def test_l2pop_first_unicast_takes_exactly_one_tunnel(seed: Scenario, src: str, dst: str):
    s, d = seed.topo.ports[src], seed.topo.ports[dst]
    res = seed.unicast(src, dst)  # nothing learned anywhere yet
    assert hops(res) == [(s.host, seed.vtep(d.host), "vxlan", 101)], f"\n{res.trace}"
    assert seed.receivers(res) == [dst], f"\n{res.trace}"
    assert all(f.cookie == COOKIE_LEARNED for _, f in res.learned)
    sender_learned = seed.fabric.hosts[s.host].bridge("tun").flows(table=20, cookie=COOKIE_LEARNED)
    assert sender_learned == [], "no learned flow on the sender may explain the single hop"


def test_learn_mode_first_unicast_floods(seed: Scenario):
    """The contrast: without l2pop the first unicast goes to every VTEP of the network."""
    res = seed.unicast("red1", "red2")
    assert hops(res) == [("hv1", "192.0.2.12", "gre", 102), ("hv1", "192.0.2.13", "gre", 102)], f"\n{res.trace}"
    assert seed.receivers(res) == ["red2"], f"\n{res.trace}"


def test_l2pop_entry_wins_over_a_conflicting_learned_entry(seed: Scenario):
    hv1 = seed.fabric.hosts["hv1"]
    blue2 = seed.topo.ports["blue2"]
    to_hv3 = seed.tunnel_ofport("hv1", "hv3", "vxlan")
    to_hv2 = seed.tunnel_ofport("hv1", "hv2", "vxlan")
    # A frame from hv3's tunnel claiming blue2's MAC (a stale or spoofed source) teaches hv1 a wrong place.
    lie = Frame(mac(blue2.mac), BROADCAST, tun_id=101, payload="blue2's MAC from hv3")
    r = hv1.inject_ofport(hv1.bridge("tun").name, to_hv3, lie)
    wrong = [f for f in r.learned if f.match_dict.get("dl_dst") == mac(blue2.mac)]
    assert len(wrong) == 1 and Output(to_hv3) in wrong[0].actions, f"learn() did not take the bait:\n{r.trace}"
    assert wrong[0] in hv1.bridge("tun").flows(table=20, cookie=COOKIE_LEARNED)
    res = seed.unicast("blue1", "blue2")
    assert hops(res) == [("hv1", "192.0.2.12", "vxlan", 101)], \
        f"the learned entry (to hv3) overrode the l2pop entry (to hv2):\n{res.trace}"
    assert [e.ofport for e in res.tunnel_hops] == [to_hv2], f"\n{res.trace}"
    assert seed.receivers(res) == ["blue2"], f"\n{res.trace}"


def test_learn_mode_learned_entry_is_what_unicast_follows(seed: Scenario):
    """The same lie in the learn-mode network does redirect unicast: proves the setup above bites."""
    hv1 = seed.fabric.hosts["hv1"]
    red2 = seed.topo.ports["red2"]
    to_hv3 = seed.tunnel_ofport("hv1", "hv3", "gre")
    r = hv1.inject_ofport(hv1.bridge("tun").name, to_hv3, Frame(mac(red2.mac), BROADCAST, tun_id=102))
    assert any(f.match_dict.get("dl_dst") == mac(red2.mac) for f in r.learned), f"\n{r.trace}"
    res = seed.unicast("red1", "red2")
    assert hops(res) == [("hv1", "192.0.2.13", "gre", 102)], f"\n{res.trace}"
    assert seed.receivers(res) == [], f"\n{res.trace}"  # hv3 has no red2: black-holed, as learning implies


# --- 4. head-end replication only to VTEPs hosting the network --------------------------------


@pytest.fixture
def with_bystander() -> Scenario:
    """The seed plus hv4, which hosts red and a third network, green (VXLAN too, VNI 103, on every
    host), but not blue: every blue host has a VXLAN tunnel to hv4, so a blue copy could go there."""
    data = seed_data()
    data["hosts"]["hv4"] = {"vtep": "192.0.2.14"}
    data["networks"]["green"] = {"vni": 103, "tunnel": "vxlan", "subnet": "203.0.113.0/24"}
    data["ports"]["red4"] = {"host": "hv4", "network": "red", "mac": "02:00:00:00:00:04", "ip": "198.51.100.4"}
    for i in (1, 2, 3, 4):
        data["ports"][f"green{i}"] = {"host": f"hv{i}", "network": "green", "mac": f"02:00:00:00:03:0{i}",
                                     "ip": f"203.0.113.{i}"}
    return Scenario(load_topology_data(data, source="seed003-l2pop + hv4 (red, green) + green everywhere"))


BROADCASTS = {
    "ethernet broadcast": lambda p: Frame.ethernet(p.mac, BROADCAST, payload="bcast"),
    "multicast": lambda p: Frame.ethernet(p.mac, "01:00:5e:00:00:01", payload="mcast"),
    "arp for an unknown ip": lambda p: Frame.arp_request(p.mac, p.ip, UNKNOWN_IP, payload="who"),
}


@pytest.mark.parametrize("kind", sorted(BROADCASTS))
@pytest.mark.parametrize("sender", ["blue1", "blue2", "blue3"])
def test_l2pop_broadcast_is_replicated_once_per_remote_vtep_hosting_it_and_no_other(
        with_bystander: Scenario, sender: str, kind: str):
    sc = with_bystander
    p = sc.topo.ports[sender]
    # hv4 is reachable from the sender over VXLAN (for green), so "no other VTEP" is a real claim.
    sc.tunnel_ofport(p.host, "hv4", "vxlan")
    res = sc.send(sender, BROADCASTS[kind](p))
    remote = sorted({"hv1", "hv2", "hv3"} - {p.host})
    assert hops(res) == sorted((p.host, sc.vtep(h), "vxlan", 101) for h in remote), f"\n{res.trace}"
    assert "192.0.2.14" not in {e.remote_ip for e in res.tunnel_hops}, f"\n{res.trace}"
    assert sc.receivers(res) == sorted({"blue1", "blue2", "blue3"} - {sender}), f"\n{res.trace}"
    # The replication list is the group: one bucket per remote blue VTEP, each with blue's key.
    group = sc.fabric.hosts[p.host].bridge("tun").groups[101]
    assert group.type == "all" and len(group.buckets) == 2, group.ofctl()


def test_learn_mode_broadcast_reaches_the_bystander_that_hosts_it(with_bystander: Scenario):
    res = with_bystander.arp_request("red1", UNKNOWN_IP)
    assert hops(res) == [("hv1", v, "gre", 102) for v in ("192.0.2.12", "192.0.2.13", "192.0.2.14")], f"\n{res.trace}"
    assert with_bystander.receivers(res) == ["red2", "red3", "red4"], f"\n{res.trace}"


def test_l2pop_tunnels_carry_only_blue_keys_across_a_whole_conversation(with_bystander: Scenario):
    """ARP, unicast both ways, a broadcast: every blue frame on the underlay has key 101 over VXLAN
    and goes to a blue VTEP; hv4 never sees blue."""
    sc = with_bystander
    results = [sc.arp_request("blue1", sc.topo.ports["blue3"].ip), sc.unicast("blue1", "blue3"),
               sc.unicast("blue3", "blue1"), sc.send("blue2", Frame.ethernet("02:00:00:00:00:02", BROADCAST))]
    for res in results:
        for e in res.tunnel_hops:
            assert e.type in TUNNEL_TYPES and (e.type, e.tun_id) == ("vxlan", 101), f"\n{res.trace}"
            assert e.remote_ip in {"192.0.2.11", "192.0.2.12", "192.0.2.13"}, f"\n{res.trace}"
    assert [len(r.tunnel_hops) for r in results] == [0, 1, 1, 2]
