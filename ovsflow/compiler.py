"""The compiler: topology -> the complete OpenFlow program of every bridge of a host.

Pure and deterministic: no I/O, no Ryu, no clocks; the same topology gives the same flows in the same
order. One function per table concern (as Neutron's br_tun.py does), each returning flows; every flow
is checked against the declared pipeline (pipelines/*.yaml) before it is accepted.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from . import flow as F
from .flow import Flow
from .graph import PATCH_OFPORT, TopologyGraph, Tunnel
from .model import Network, Topology
from .pipeline import Pipeline, load_pipeline
from .program import COOKIE_LEARNED, COOKIE_STATIC, BridgeProgram, HostProgram, PortConfig

TUNNEL_TABLE = {"gre": 3, "vxlan": 4, "geneve": 6}
BROADCAST = 0xFFFFFFFFFFFF
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_SOLICIT, ND_ADVERT = 135, 136
NA_FLAGS_SOLICITED_OVERRIDE = 0x60000000  # nd_reserved: S and O set, R clear (not a router)
MULTICAST = (0x010000000000, 0x010000000000)  # dl_dst=01:00:00:00:00:00/01:00:00:00:00:00
UNICAST = (0x000000000000, 0x010000000000)
NO_VLAN = (0x0000, 0x1FFF)  # vlan_tci=0x0000/0x1fff: no VLAN header

# Priorities in br-tun table 20: pre-populated (l2pop) entries win over learned ones.
PRIO_L2POP = 2
PRIO_LEARNED = 1


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def vid(vlan: int) -> int:
    return F.OFPVID_PRESENT | vlan


def ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def ip6_int(ip: str) -> int:
    return int(ipaddress.IPv6Address(ip))


def flood_group_id(net: Network) -> int:
    """A network's flood group is numbered by its VNI: unique, stable, readable in dumps."""
    return net.vni


class HostCompiler:
    """Compiles one host. Holds the per-host facts (VLANs, ofports, tunnels) the table functions share."""

    def __init__(self, graph: TopologyGraph, host: str):
        self.graph = graph
        self.topo = graph.topo
        self.host = self.topo.hosts[host]
        self.vlans = graph.local_vlans(host)
        self.vm_ofports = graph.vm_ofports(host)
        self.tunnels = graph.tunnels(host)
        self.tunnel_by_key = {(t.remote, t.type): t for t in self.tunnels}
        self.networks = graph.networks_on(host)  # sorted by VNI
        self.ports = graph.ports_on(host)

    # -- shared facts ------------------------------------------------------------------------------
    def remote_tunnels(self, net: Network) -> list[Tunnel]:
        """The head-end replication list of a network, as tunnel ports (sorted by ofport)."""
        return sorted(
            (self.tunnel_by_key[(h, net.tunnel)] for h in self.graph.remote_hosts(self.host.name, net.name)),
            key=lambda t: t.ofport,
        )

    def has_remotes(self, net: Network) -> bool:
        return bool(self.graph.remote_hosts(self.host.name, net.name))

    # -- br-tun ------------------------------------------------------------------------------------
    def tun_classify(self) -> Iterable[Flow]:
        yield Flow.make(0, 1, {"in_port": PATCH_OFPORT}, [F.GotoTable(2)])
        for t in self.tunnels:
            yield Flow.make(0, 1, {"in_port": t.ofport}, [F.GotoTable(TUNNEL_TABLE[t.type])])

    def tun_from_int(self) -> Iterable[Flow]:
        yield Flow.make(2, 1, {"dl_dst": UNICAST}, [F.GotoTable(20)])
        yield Flow.make(2, 1, {"dl_dst": MULTICAST}, [F.GotoTable(22)])

    def tun_key_to_vlan(self) -> Iterable[Flow]:
        """Only networks this host shares with some other VTEP accept tunnel traffic; unknown keys drop."""
        for net in self.networks:
            if self.has_remotes(net):
                yield Flow.make(
                    TUNNEL_TABLE[net.tunnel], 1, {"tun_id": net.vni},
                    [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[net.name])), F.GotoTable(10)],
                )

    def tun_learn(self) -> Iterable[Flow]:
        """Seed 003's learn(): remember where a remote MAC lives, per VLAN; learned flows strip the VLAN,
        set the tunnel key the frame came with and output to the tunnel port it came from."""
        groups: dict[tuple[int, int], list[Network]] = {}
        for net in self.networks:
            if self.has_remotes(net):
                groups.setdefault((net.hard_timeout, net.idle_timeout), []).append(net)
        if not groups:
            return
        # The most common timeout pair is the catch-all; networks that differ get their own flow.
        default = max(groups, key=lambda k: (len(groups[k]), k))
        for timeouts, nets in sorted(groups.items()):
            learn = F.Learn(
                table=20, priority=PRIO_LEARNED, cookie=COOKIE_LEARNED,
                hard_timeout=timeouts[0], idle_timeout=timeouts[1],
                specs=(
                    F.LearnSpec("match", "vlan_tci", None, 12),
                    F.LearnSpec("match", "dl_dst", "dl_src"),
                    F.LearnSpec("load", "vlan_tci", 0),
                    F.LearnSpec("load", "tun_id", "tun_id"),
                    F.LearnSpec("output", None, "in_port"),
                ),
            )
            actions = [learn, F.Output(PATCH_OFPORT)]
            if timeouts == default:
                yield Flow.make(10, 1, {}, actions)
            else:
                for net in nets:
                    yield Flow.make(10, 2, {"dl_vlan": self.vlans[net.name]}, actions)

    def tun_unicast(self) -> Iterable[Flow]:
        """l2pop: every remote port of an l2pop network pre-installed, above anything learned.
        (This is the one per-remote-VM loop: actions are shared values, built once per network.)"""
        pop = F.PopVlan()
        for net in self.networks:
            if net.mode != "l2pop":
                continue
            vlan, set_key = self.vlans[net.name], F.SetField("tun_id", net.vni)
            outputs = {h: F.Output(self.tunnel_by_key[(h, net.tunnel)].ofport) for h in self.graph.remote_hosts(self.host.name, net.name)}
            for port in self.graph.ports_of(net.name):
                if port.host != self.host.name:
                    yield Flow.make(20, PRIO_L2POP, {"dl_vlan": vlan, "dl_dst": mac_int(port.mac)}, (pop, set_key, outputs[port.host]))

    def tun_arp_responder(self) -> Iterable[Flow]:
        """l2pop (seed 002): ARP requests for known IPs never reach the underlay. A remote VM's IP is
        answered here, in the switch (reply built from the request, sent back where it came from);
        a local VM's IP is dropped here because br-int already delivered the request to that VM."""
        for net in self.networks:
            if net.mode != "l2pop" or not self.has_remotes(net):
                continue
            vlan = self.vlans[net.name]
            yield Flow.make(2, 2, {"dl_vlan": vlan, "dl_dst": BROADCAST, "dl_type": ETH_ARP, "arp_op": 1}, [F.GotoTable(21)])
            for port in self.graph.ports_of(net.name):
                if port.ip is None:
                    continue
                match = {"dl_vlan": vlan, "dl_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip_int(port.ip)}
                if port.host == self.host.name:
                    yield Flow.make(21, 1, match, [])
                    continue
                yield Flow.make(21, 1, match, [
                    F.Move("dl_src", "dl_dst"),
                    F.SetField("eth_src", mac_int(port.mac)),
                    F.SetField("arp_op", 2),
                    F.Move("arp_sha", "arp_tha"),
                    F.Move("arp_spa", "arp_tpa"),
                    F.SetField("arp_sha", mac_int(port.mac)),
                    F.SetField("arp_spa", ip_int(port.ip)),
                    F.Output(F.IN_PORT),
                ])

    def tun_nd_responder(self) -> Iterable[Flow]:
        """l2pop for IPv6, which Neutron does not do: a neighbour solicitation for a remote VM's
        address becomes an advertisement in the switch (two tables: OVS accepts nd_tll only on a
        frame already matched as an advertisement). Duplicate address detection (source ::) floods."""
        icmp6 = {"dl_type": ETH_IPV6, "nw_proto": IPPROTO_ICMPV6}
        for net in self.networks:
            if net.mode != "l2pop" or not self.has_remotes(net):
                continue
            vlan = self.vlans[net.name]
            yield Flow.make(2, 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT}, [F.GotoTable(21)])
            yield Flow.make(21, 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "ipv6_src": 0}, [F.GotoTable(22)])
            for port in self.graph.ports_of(net.name):
                if port.ipv6 is None:
                    continue
                target = ip6_int(port.ipv6)
                solicit = {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "nd_target": target}
                if port.host == self.host.name:
                    yield Flow.make(21, 1, solicit, [])
                    continue
                yield Flow.make(21, 1, solicit, [
                    F.SetField("icmpv6_type", ND_ADVERT),
                    F.SetField("icmpv6_code", 0),
                    F.SetField("nd_reserved", NA_FLAGS_SOLICITED_OVERRIDE),
                    F.SetField("nd_options_type", 2),
                    F.GotoTable(23),
                ])
                yield Flow.make(23, 1, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_ADVERT, "nd_target": target}, [
                    F.SetField("nd_tll", mac_int(port.mac)),
                    F.Move("dl_src", "dl_dst"),
                    F.SetField("eth_src", mac_int(port.mac)),
                    F.Move("ipv6_src", "ipv6_dst"),
                    F.SetField("ipv6_src", target),
                    F.Output(F.IN_PORT),
                ])

    def tun_flood(self) -> Iterable[Flow]:
        """Head-end replication (seed 004): one copy per VTEP hosting the network, none elsewhere.
        The list lives in a group (type all, a bucket per remote VTEP), so a VTEP joining or leaving
        a network is one group-mod and no flow changes."""
        for net in self.networks:
            if self.remote_tunnels(net):
                yield Flow.make(22, 1, {"dl_vlan": self.vlans[net.name]}, [F.PopVlan(), F.Group(flood_group_id(net))])

    def tun_groups(self) -> list[F.GroupEntry]:
        groups = []
        for net in self.networks:
            tunnels = self.remote_tunnels(net)
            if tunnels:
                buckets = tuple(F.Bucket((F.SetField("tun_id", net.vni), F.Output(t.ofport))) for t in tunnels)
                groups.append(F.GroupEntry(flood_group_id(net), "all", buckets))
        return sorted(groups, key=lambda g: g.group_id)

    # -- br-int ------------------------------------------------------------------------------------
    def int_classify(self) -> Iterable[Flow]:
        for port in self.ports:
            yield Flow.make(
                0, 1, {"in_port": self.vm_ofports[port.name], "dl_src": mac_int(port.mac), "vlan_tci": NO_VLAN},
                [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[port.network])), F.GotoTable(10)],
            )
        for net in self.networks:
            if self.has_remotes(net):
                yield Flow.make(0, 1, {"in_port": PATCH_OFPORT, "dl_vlan": self.vlans[net.name]}, [F.GotoTable(20)])

    def int_from_vm(self) -> Iterable[Flow]:
        for net in self.networks:
            vlan = self.vlans[net.name]
            remotes = self.has_remotes(net)
            to_tun = [F.Output(PATCH_OFPORT)] if remotes else []
            yield Flow.make(10, 2, {"dl_vlan": vlan, "dl_dst": MULTICAST}, [*to_tun, F.GotoTable(20)])
            if remotes:
                yield Flow.make(10, 1, {"dl_vlan": vlan}, to_tun)
        for port in self.ports:
            yield Flow.make(10, 3, {"dl_vlan": self.vlans[port.network], "dl_dst": mac_int(port.mac)}, [F.GotoTable(20)])

    def int_to_vm(self) -> Iterable[Flow]:
        by_net: dict[str, list[int]] = {}
        for port in self.ports:
            ofport = self.vm_ofports[port.name]
            by_net.setdefault(port.network, []).append(ofport)
            yield Flow.make(
                20, 2, {"dl_vlan": self.vlans[port.network], "dl_dst": mac_int(port.mac)},
                [F.PopVlan(), F.Output(ofport)],
            )
        for net in self.networks:
            ofports = sorted(by_net.get(net.name, []))
            yield Flow.make(20, 1, {"dl_vlan": self.vlans[net.name], "dl_dst": MULTICAST}, [F.PopVlan(), *(F.Output(p) for p in ofports)])

    # -- assembly ----------------------------------------------------------------------------------
    def bridge_tun(self) -> BridgeProgram:
        flows = [*self.tun_classify(), *self.tun_from_int(), *self.tun_key_to_vlan(), *self.tun_learn(),
                 *self.tun_unicast(), *self.tun_arp_responder(),
                 *self.tun_nd_responder(), *self.tun_flood()]
        ports = [PortConfig("patch-int", PATCH_OFPORT, "patch", (("peer", "patch-tun"),), f"patch to {self.host.bridge_int}")]
        for t in self.tunnels:
            opts = (("key", "flow"), ("local_ip", self.host.vtep), ("remote_ip", t.remote_ip))
            ports.append(PortConfig(t.name, t.ofport, t.type, opts, f"{t.type} tunnel to {t.remote} {t.remote_ip}"))
        return self._bridge(self.host.bridge_tun, "tun", self.graph.datapath_ids(self.host.name)[1], ports, flows,
                            self.tun_groups())

    def bridge_int(self) -> BridgeProgram:
        flows = [*self.int_classify(), *self.int_from_vm(), *self.int_to_vm()]
        ports = [PortConfig("patch-tun", PATCH_OFPORT, "patch", (("peer", "patch-int"),), f"patch to {self.host.bridge_tun}")]
        for port in self.ports:
            ports.append(PortConfig(port.iface, self.vm_ofports[port.name], "", (), f"VM port {port.name} ({port.network}, {port.mac})"))
        ports.sort(key=lambda p: p.ofport)
        return self._bridge(self.host.bridge_int, "int", self.graph.datapath_ids(self.host.name)[0], ports, flows)

    def _bridge(self, name: str, role: str, dpid: int, ports: list[PortConfig], flows: list[Flow],
                groups: list[F.GroupEntry] = ()) -> BridgeProgram:  # type: ignore[assignment]
        pipeline: Pipeline = load_pipeline(role)
        program = [Flow(f.table, f.priority, f.match, f.actions, COOKIE_STATIC, f.hard_timeout, f.idle_timeout) for f in flows]
        program += pipeline.miss_flows(COOKIE_STATIC)
        for f in program:
            pipeline.check(f)
        keys = [(f.table, f.priority, f.match) for f in program]
        if len(set(keys)) != len(keys):
            dups = sorted({str(k) for k in keys if keys.count(k) > 1})
            raise AssertionError(f"compiler emitted two flows with the same match and priority: {dups[:3]}")
        program.sort(key=Flow.sort_key)
        group_ids = {g.group_id for g in groups}
        for f in program:
            for a in f.actions:
                if isinstance(a, F.Group) and a.group_id not in group_ids:
                    raise AssertionError(f"flow outputs to group {a.group_id}, which the program does not define: {f}")
        return BridgeProgram(name, role, self.host.datapath_type, dpid, tuple(ports), tuple(program), tuple(groups))

    def compile(self, datapath_type: str | None = None) -> HostProgram:
        bridges = (self.bridge_int(), self.bridge_tun())
        if datapath_type:
            bridges = tuple(
                BridgeProgram(b.name, b.role, datapath_type, b.datapath_id, b.ports, b.flows, b.groups) for b in bridges
            )
        return HostProgram(self.host.name, self.host.vtep, bridges, dict(self.vlans))


def compile_host(topo: Topology, host: str, datapath_type: str | None = None, graph: TopologyGraph | None = None) -> HostProgram:
    """The program of one host. Pass a prebuilt `graph` when compiling many hosts of one topology."""
    if host not in topo.hosts:
        raise KeyError(host)
    if graph is not None and graph.focus not in (None, host):
        raise ValueError(f"graph focused on {graph.focus}, not {host}")
    return HostCompiler(graph or TopologyGraph(topo, focus=host), host).compile(datapath_type)


def compile_all(topo: Topology, datapath_type: str | None = None) -> dict[str, HostProgram]:
    graph = TopologyGraph(topo)
    return {h: compile_host(topo, h, datapath_type, graph) for h in sorted(topo.hosts)}
