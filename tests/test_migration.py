"""Issue 5, evaluator level: moving a VM port to another host.

A move is a topology edit (the port's `host`), then every host is recompiled. These tests check that
(1) exactly the affected hosts get a different program: hosts that never host the moved port's
network are byte-identical (flows, groups and the rendered script); (2) in l2pop mode the other
hosts' pre-populated unicast entry for the moved MAC now points at the new host's tunnel while the
ARP responder entry (which says nothing about location) is unchanged; (3) a fabric built from the
new programs delivers ARP + unicast from a VM on a third host to the moved VM at its new place;
(4) in a flood-and-learn network, stale learned entries (kept by render and the live app, which
never delete learned flows) are corrected by one gratuitous ARP from the moved VM.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
from test_l2pop import Scenario

from ovsflow import flow as F
from ovsflow.compiler import compile_host
from ovsflow.evaluator import Fabric, FabricResult
from ovsflow.model import Topology, load_topology_data
from ovsflow.ofctl import flow_lines, group_lines
from ovsflow.packet import ARP_REPLY, BROADCAST, Frame, ipv4, mac
from ovsflow.pipeline import Pipelines
from ovsflow.program import COOKIE_LEARNED, HostProgram
from ovsflow.render import render_script

UNICAST = Pipelines.load().tun["unicast"].id  # br-tun's table of the program's own (l2pop) entries

SOURCE = "migration topology"  # the same for before and after: the rendered header names it

BASE: dict = {
    "hosts": {f"hv{i}": {"vtep": f"192.0.2.{10 + i}"} for i in range(1, 7)},
    "networks": {
        "blue": {"vni": 101, "tunnel": "vxlan", "mode": "l2pop", "subnet": "198.51.100.0/24"},
        "red": {"vni": 102, "tunnel": "gre", "subnet": "198.51.100.0/24"},
        "green": {"vni": 103, "tunnel": "vxlan", "subnet": "203.0.113.0/24"},
    },
    "ports": {
        "blue1": {"host": "hv1", "network": "blue", "mac": "02:00:00:00:01:01", "ip": "198.51.100.1"},
        "blue2": {"host": "hv2", "network": "blue", "mac": "02:00:00:00:01:02", "ip": "198.51.100.2"},
        "blue2b": {"host": "hv2", "network": "blue", "mac": "02:00:00:00:01:22", "ip": "198.51.100.22"},
        "blue3": {"host": "hv3", "network": "blue", "mac": "02:00:00:00:01:03", "ip": "198.51.100.3"},
        "red1": {"host": "hv1", "network": "red", "mac": "02:00:00:00:02:01", "ip": "198.51.100.1"},
        "red2": {"host": "hv2", "network": "red", "mac": "02:00:00:00:02:02", "ip": "198.51.100.2"},
        "red2b": {"host": "hv2", "network": "red", "mac": "02:00:00:00:02:22", "ip": "198.51.100.22"},
        "red3": {"host": "hv3", "network": "red", "mac": "02:00:00:00:02:03", "ip": "198.51.100.3"},
        "red6": {"host": "hv6", "network": "red", "mac": "02:00:00:00:02:06", "ip": "198.51.100.6"},
        # hv4 and hv5 share green over VXLAN: hv5 is next to a new host but never on blue or red.
        "green4": {"host": "hv4", "network": "green", "mac": "02:00:00:00:03:04", "ip": "203.0.113.4"},
        "green5": {"host": "hv5", "network": "green", "mac": "02:00:00:00:03:05", "ip": "203.0.113.5"},
    },
}
HOSTS = sorted(BASE["hosts"])


@dataclass(frozen=True)
class Move:
    """One migration and the hosts whose programs must change (worked out by hand)."""

    port: str
    to: str
    changed: frozenset[str]
    peer: str  # a VM of the same network on a third host (neither old nor new)
    why: str

    def __str__(self) -> str:
        return f"{self.port}->{self.to}"


MOVES = [
    Move("blue2", "hv4", frozenset({"hv1", "hv2", "hv3", "hv4"}), "blue1",
         "l2pop, to a host new to the network: every blue host's table 20 and group, hv4 joins"),
    Move("blue3", "hv4", frozenset({"hv1", "hv2", "hv3", "hv4"}), "blue1",
         "l2pop, the old host leaves the network and the new one joins"),
    Move("blue2b", "hv3", frozenset({"hv1", "hv2", "hv3"}), "blue1",
         "l2pop, between two hosts already on blue: hv1's table 20 entry still has to move"),
    Move("red2", "hv4", frozenset({"hv1", "hv2", "hv3", "hv4", "hv6"}), "red1",
         "learn, to a host new to red: every red host's replication list gains hv4"),
    Move("red2b", "hv3", frozenset({"hv2", "hv3"}), "red1",
         "learn, between hosts already on red: nothing on hv1/hv6 names a location, so they stay"),
]
L2POP_MOVES = [m for m in MOVES if m.port.startswith("blue")]
LEARN_MOVES = [m for m in MOVES if m.port.startswith("red")]


def topology(move: Move | None = None) -> Topology:
    data = copy.deepcopy(BASE)
    if move is not None:
        assert data["ports"][move.port]["host"] != move.to
        data["ports"][move.port]["host"] = move.to
    return load_topology_data(data, source=SOURCE)


def programs(topo: Topology) -> dict[str, HostProgram]:
    return {h: compile_host(topo, h) for h in HOSTS}


def text(p: HostProgram) -> str:
    """Everything a host's switches get: every bridge's ports, flows and groups, as ovs-ofctl text."""
    out = []
    for b in p.bridges:
        out += [f"bridge {b.name} {b.datapath_type} {b.datapath_id:#x}", *map(repr, b.ports)]
        out += flow_lines(b, comments=False) + group_lines(b)
    return "\n".join(out)


def hosts_of(topo: Topology, network: str) -> set[str]:
    return {p.host for p in topo.ports.values() if p.network == network}


def tunnel_ofport(p: HostProgram, remote_ip: str, type_: str) -> int:
    found = [t.ofport for t in p.bridge("tun").ports
             if t.type == type_ and dict(t.options).get("remote_ip") == remote_ip]
    assert len(found) == 1, f"{p.host}: expected one {type_} tunnel to {remote_ip}, found {found}"
    return found[0]


def flows_for(p: HostProgram, table: int, **match) -> list[F.Flow]:
    return [f for f in p.bridge("tun").flows
            if f.table == table and all(f.match_dict.get(k) == v for k, v in match.items())]


# --- 1. exactly the affected hosts change -----------------------------------------------------


@pytest.mark.parametrize("move", MOVES, ids=str)
def test_a_move_changes_exactly_the_affected_hosts(move: Move):
    before, after = topology(), topology(move)
    old = before.ports[move.port].host
    net = before.ports[move.port].network
    on_net = hosts_of(before, net) | hosts_of(after, net)
    # The hand-worked expectation agrees with the rule: old and new host change, no host off the network does.
    assert {old, move.to} <= move.changed <= on_net, move
    p0, p1 = programs(before), programs(after)
    changed = {h for h in HOSTS if text(p0[h]) != text(p1[h])}
    assert changed == move.changed, f"{move.why}: changed {sorted(changed)}, expected {sorted(move.changed)}"
    for h in sorted(set(HOSTS) - on_net):
        assert p0[h] == p1[h], f"{h} does not host {net} but its program changed"
        assert render_script(before, h) == render_script(after, h), f"{h}: rendered script changed"
    assert set(HOSTS) - on_net, "the scenario needs at least one host off the network"


@pytest.mark.parametrize("move", MOVES, ids=str)
def test_a_move_touches_only_location_flows_on_the_hosts_that_share_the_network(move: Move):
    """On a host that neither loses nor gains the VM, br-int is untouched and br-tun changes only in
    table 0 (a tunnel port added or removed), table unicast (l2pop: the moved MAC's entry) and the flood group."""
    before, after = topology(), topology(move)
    old, moved_mac = before.ports[move.port].host, mac(before.ports[move.port].mac)
    l2pop = before.networks[before.ports[move.port].network].mode == "l2pop"
    p0, p1 = programs(before), programs(after)
    for h in sorted(move.changed - {old, move.to}):
        assert p0[h].bridge("int") == p1[h].bridge("int"), f"{h}: br-int changed"
        f0, f1 = set(p0[h].bridge("tun").flows), set(p1[h].bridge("tun").flows)
        diff = f0 ^ f1
        assert {f.table for f in diff} <= ({0, UNICAST} if l2pop else {0}), \
            f"{h}: unexpected br-tun changes:\n" + "\n".join(sorted(map(str, diff)))
        t20 = [f for f in diff if f.table == UNICAST]
        assert all(f.match_dict.get("dl_dst") == moved_mac for f in t20), t20
        assert len([f for f in t20 if f in f1]) == (1 if l2pop else 0), t20


@pytest.mark.parametrize("move", L2POP_MOVES, ids=str)
def test_l2pop_entries_follow_the_moved_mac_and_the_arp_entry_stays(move: Move):
    before, after = topology(), topology(move)
    port0, port1 = before.ports[move.port], after.ports[move.port]
    old, new = port0.host, port1.host
    p0, p1 = programs(before), programs(after)
    moved_mac, moved_ip = mac(port1.mac), ipv4(port1.ip)
    new_vtep = after.hosts[new].vtep
    for h in sorted(hosts_of(after, "blue") - {new}):
        vlan = p1[h].local_vlans["blue"]
        entry = flows_for(p1[h], UNICAST, dl_dst=moved_mac)
        assert len(entry) == 1 and entry[0].priority == 2, f"{h}: table {UNICAST} for {port1.mac}: {entry}"
        assert entry[0].match_dict["dl_vlan"] == vlan
        want = (F.PopVlan(), F.SetField("tun_id", 101), F.Output(tunnel_ofport(p1[h], new_vtep, "vxlan")))
        assert entry[0].actions == want, f"{h}: {entry[0]} does not go to {new} ({new_vtep})"
        arp1 = flows_for(p1[h], 21, arp_tpa=moved_ip)
        assert len(arp1) == 1 and arp1[0].actions, f"{h}: no ARP answer for {port1.ip}: {arp1}"
        if h != old:  # the old host used to drop it (the VM was local); the others keep it as it was
            assert flows_for(p0[h], 21, arp_tpa=moved_ip) == arp1, f"{h}: ARP responder entry changed"
    # The new host: the MAC is local now (no tunnel entry) and an ARP for it is left to br-int.
    assert flows_for(p1[new], UNICAST, dl_dst=moved_mac) == []
    assert [f.actions for f in flows_for(p1[new], 21, arp_tpa=moved_ip)] == [()]
    # Every blue host's flood group has one bucket per other blue host, hv4 included iff it hosts blue.
    for h in sorted(hosts_of(after, "blue")):
        group = {g.group_id: g for g in p1[h].bridge("tun").groups}[101]
        want_ports = sorted(tunnel_ofport(p1[h], after.hosts[r].vtep, "vxlan")
                            for r in hosts_of(after, "blue") - {h})
        got_ports = sorted(a.port for b in group.buckets for a in b.actions if isinstance(a, F.Output))
        assert got_ports == want_ports, f"{h}: {group.ofctl()}"


# --- 2. the fabric after the move -------------------------------------------------------------


class Net(Scenario):
    """test_l2pop's Scenario (a fabric of compiled hosts driven by port names), plus move views."""

    def at(self, res: FabricResult) -> list[tuple[str, str]]:
        """(port name, host) of every delivery, sorted, duplicates kept."""
        return sorted((self.by_iface.get((e.host, e.port), f"?{e.port}"), e.host) for e in res.deliveries)

    def hops(self, res: FabricResult) -> list[str]:
        """The VTEPs frames were tunnelled to, sorted, duplicates kept."""
        return sorted(e.remote_ip for e in res.tunnel_hops)  # type: ignore[misc]

    def port_vtep(self, port: str) -> str:
        return self.vtep(self.topo.ports[port].host)


@pytest.mark.parametrize("move", MOVES, ids=str)
def test_after_the_move_arp_and_unicast_from_a_third_host_reach_the_vm_at_its_new_place(move: Move):
    old_net, net = Net(topology()), Net(topology(move))
    vm, peer = net.topo.ports[move.port], net.topo.ports[move.peer]
    old_host = old_net.topo.ports[move.port].host
    assert peer.host not in (old_host, vm.host)
    l2pop = net.topo.networks[vm.network].mode == "l2pop"
    # Before the move the same first unicast went to the old host (l2pop) or flooded (learn).
    first = old_net.unicast(move.peer, move.port)
    assert old_net.at(first) == [(move.port, old_host)], f"\n{first.trace}"
    # ARP: "who has vm.ip?"
    res = net.send(move.peer, Frame.arp_request(peer.mac, peer.ip, vm.ip, payload="ping?"))
    if l2pop:
        assert res.tunnel_hops == [] and net.at(res) == [(move.peer, peer.host)], f"\n{res.trace}"
        answer = res.deliveries[0].frame
        assert (answer.arp_op, answer.arp_sha, answer.arp_spa) == (ARP_REPLY, mac(vm.mac), ipv4(vm.ip)), answer
    else:
        assert (move.port, vm.host) in net.at(res), f"the request missed {move.port} on {vm.host}:\n{res.trace}"
        assert net.at(res).count((move.port, vm.host)) == 1, f"\n{res.trace}"
        reply = net.send(move.port, Frame.arp_reply(vm.mac, vm.ip, peer.mac, peer.ip, payload="pong!"))
        assert net.hops(reply) == [net.port_vtep(move.peer)], f"\n{reply.trace}"
        assert net.at(reply) == [(move.peer, peer.host)], f"\n{reply.trace}"
    # Unicast both ways: one tunnel each, to the new place and back.
    there = net.unicast(move.peer, move.port)
    assert net.hops(there) == [net.port_vtep(move.port)], f"{move.why}:\n{there.trace}"
    assert net.at(there) == [(move.port, vm.host)], f"\n{there.trace}"
    back = net.unicast(move.port, move.peer)
    assert net.hops(back) == [net.port_vtep(move.peer)], f"\n{back.trace}"
    assert net.at(back) == [(move.peer, peer.host)], f"\n{back.trace}"


# --- 3. gratuitous ARP after a move in a flood-and-learn network ------------------------------


def carry_learned(src: Fabric, dst: Fabric) -> int:
    """Copy learned flows into a fabric built from new programs: render (replace-flows keeps what is
    not the static program) and the live app (never touches COOKIE_LEARNED) leave them on the switch."""
    n = 0
    for name, host in src.hosts.items():
        for bname, bridge in host.bridges.items():
            for f in bridge.flows(cookie=COOKIE_LEARNED):
                dst.hosts[name].bridges[bname].add_flow(f, check=False)
                n += 1
    return n


def learned_for(fabric: Fabric, host: str, mac_text: str) -> list[F.Flow]:
    return [f for f in fabric.hosts[host].bridge("tun").flows(table=20, cookie=COOKIE_LEARNED)
            if f.match_dict.get("dl_dst") == mac(mac_text)]


GARPS = {
    "request": lambda p: Frame.arp_request(p.mac, p.ip, p.ip, payload="garp"),
    "reply": lambda p: Frame(mac(p.mac), BROADCAST, 0x0806, None, ARP_REPLY, ipv4(p.ip), ipv4(p.ip),
                             mac(p.mac), BROADCAST, payload="garp"),
}


@pytest.mark.parametrize("garp", sorted(GARPS))
@pytest.mark.parametrize("move", LEARN_MOVES, ids=str)
def test_gratuitous_arp_after_a_move_reteaches_every_other_host(move: Move, garp: str):
    old_net = Net(topology())
    reds = sorted(p.name for p in old_net.topo.ports.values() if p.network == "red")
    moved_mac = old_net.topo.ports[move.port].mac
    old_host = old_net.topo.ports[move.port].host
    # Before the move: everyone talks to the VM, so every other red host learns it at the old host.
    for other in reds:
        if other != move.port:
            old_net.unicast(other, move.port)
            old_net.unicast(move.port, other)
    learners = sorted(hosts_of(old_net.topo, "red") - {old_host})
    for h in learners:
        assert len(learned_for(old_net.fabric, h, moved_mac)) == 1, f"{h} did not learn {move.port}"

    net = Net(topology(move))
    assert carry_learned(old_net.fabric, net.fabric) > 0
    vm = net.topo.ports[move.port]
    new_vtep = net.topo.hosts[vm.host].vtep
    stale = [h for h in learners if h != vm.host]
    assert stale, "the scenario needs a host with a stale entry"
    # The stale entries black-hole unicast: it goes to the old host and nobody gets it.
    res = net.unicast(move.peer, move.port)
    assert net.hops(res) == [old_net.topo.hosts[old_host].vtep] and net.at(res) == [], f"\n{res.trace}"

    res = net.send(move.port, GARPS[garp](vm))
    others = sorted(hosts_of(net.topo, "red") - {vm.host})
    assert net.hops(res) == sorted(net.topo.hosts[h].vtep for h in others), f"\n{res.trace}"
    for h in others:
        entry = learned_for(net.fabric, h, moved_mac)
        to_new = tunnel_ofport(net.fabric.hosts[h].program, new_vtep, "gre")
        assert len(entry) == 1, f"{h}: {len(entry)} learned entries for {moved_mac}: {entry}"
        assert F.Output(to_new) in entry[0].actions, \
            f"{h}: learned entry for {moved_mac} does not point at {vm.host}'s tunnel ({to_new}): {entry[0]}"
    # And now every red VM reaches the moved one exactly once, over at most one tunnel.
    for other in reds:
        if other == move.port:
            continue
        res = net.unicast(other, move.port)
        same_host = net.topo.ports[other].host == vm.host
        assert net.hops(res) == ([] if same_host else [new_vtep]), f"{other}:\n{res.trace}"
        assert net.at(res) == [(move.port, vm.host)], f"{other}:\n{res.trace}"


@pytest.mark.parametrize("garp", sorted(GARPS))
@pytest.mark.parametrize("move", L2POP_MOVES, ids=str)
def test_l2pop_needs_no_gratuitous_arp_and_stale_learned_entries_do_not_matter(move: Move, garp: str):
    """In l2pop mode the compiler moved the entries already; learned entries left from before the move
    (priority 1) lose to them whether or not the VM sends a gratuitous ARP."""
    old_net = Net(topology())
    blues = sorted(p.name for p in old_net.topo.ports.values() if p.network == "blue")
    for other in blues:  # traffic both ways so every host learns what it can
        if other != move.port:
            o = old_net.topo.ports[other]
            old_net.send(other, Frame.arp_request(o.mac, o.ip, "198.51.100.77"))
            old_net.unicast(move.port, other)
    net = Net(topology(move))
    carry_learned(old_net.fabric, net.fabric)
    vm = net.topo.ports[move.port]
    old_host = old_net.topo.ports[move.port].host
    stale = [h for h in sorted(net.fabric.hosts) if h != old_host and learned_for(net.fabric, h, vm.mac)]
    assert stale, "the scenario needs a stale learned entry for the moved MAC somewhere"
    for sent_garp in (False, True):
        if sent_garp:
            res = net.send(move.port, GARPS[garp](vm))
            # Dropped in br-tun (a request for a local IP) or flooded: never twice, never off blue.
            blue_vteps = {net.topo.hosts[h].vtep for h in hosts_of(net.topo, "blue") - {vm.host}}
            got = net.hops(res)
            assert len(got) == len(set(got)) and set(got) <= blue_vteps, f"\n{res.trace}"
        for other in blues:
            if other == move.port:
                continue
            res = net.unicast(other, move.port)
            same_host = net.topo.ports[other].host == vm.host
            assert net.hops(res) == ([] if same_host else [net.port_vtep(move.port)]), \
                f"{other} (after garp: {sent_garp}):\n{res.trace}"
            assert net.at(res) == [(move.port, vm.host)], f"{other}:\n{res.trace}"
