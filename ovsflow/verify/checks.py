"""One host's part of the proof: every class that leaves it is checked against the topology.

Assume-guarantee across tunnels: each host is verified alone, assuming that a frame arriving on a
tunnel with key K is an (untagged) frame of the network whose VNI is K, sent by a host attached to
that network; and each host guarantees exactly that for every frame it sends into a tunnel (right
key for the frame's network, right tunnel type, a host attached to it, untagged). By induction
over the hops of any path, no frame ever changes network except where a router's conditions hold.
The expectations (which network a port or VNI is, which hosts host or route a network, which
router joins which networks and with which MACs) come from the topology, never from the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import ARP_REPLY, ARP_REQUEST, BROADCAST, ETH_TYPE_ARP, ETH_TYPE_IP, ICMP_ECHO_REPLY, ip4_int, mac
from ..flow import Group, Learn, SetField
from ..graph import TopologyGraph
from ..model import Network, Port, Topology
from ..pipeline import Pipelines
from ..program import TUNNEL_TYPES, HostProgram
from .explore import Exit, HClass, HostExplorer
from .space import Cube, relevant, witness


@dataclass
class Violation:
    kind: str  # isolation, reachability, loop, flood-group, tunnel-key, leak, limit
    host: str
    message: str
    entry: tuple[str, int] | None = None  # (bridge, ofport) the counterexample enters at
    frame: dict[str, int] | None = None  # the counterexample's field values at entry
    tun_id: int | None = None
    via_learned: bool = False


@dataclass
class HostReport:
    host: str
    violations: list[Violation] = field(default_factory=list)
    classes: int = 0
    flows: int = 0
    exits: int = 0


UNICAST_TO = "u"
BROADCAST_TO = "b"
ROUTED_TO = "r"  # IPv4 to the router's MAC, for the target's address
GATEWAY = ("gw-arp", "gw-ping")  # the gateway's ARP and ping answers, back to the sender


class HostCheck:
    """Explores every entry of one host's program and checks each exit."""

    def __init__(self, topo: Topology, graph: TopologyGraph, program: HostProgram, pipelines: Pipelines) -> None:
        self.topo, self.graph, self.program = topo, graph, program
        self.host = program.host
        self.report = HostReport(self.host, flows=sum(len(b.flows) for b in program.bridges))
        self.net_by_vni = {n.vni: n for n in topo.networks.values()}
        self.host_by_vtep = {h.vtep: h.name for h in topo.hosts.values()}
        by_iface = {p.iface: p for p in graph.ports_on(self.host)}
        self.vm_ports: dict[int, Port] = {}
        self.tunnel_hosts: dict[int, tuple[str, str]] = {}
        for b in program.bridges:
            for p in b.ports:
                if p.type == "" and p.name in by_iface:
                    self.vm_ports[p.ofport] = by_iface[p.name]
                elif p.type in TUNNEL_TYPES:
                    self.tunnel_hosts[p.ofport] = (self.host_by_vtep.get(dict(p.options).get("remote_ip", ""), "?"), p.type)
        self.pipelines = pipelines
        self.reached: dict[str, set[tuple[str, str]]] = {}  # sender port -> (target port, kind)
        self.delivered_in: dict[str, set[tuple[int, str]]] = {}  # local port -> (tunnel port, kind) it receives by
        self.relays: set[tuple[int, str, int]] = set()  # (key in, remote host, key out): tunnel -> tunnel
        self.routed_in: set[tuple[str, str]] = set()  # (source network, target port) routed from tunnels here
        self.entry: tuple[str, Cube] | None = None
        self.checking = True
        self._attached: dict[str, frozenset[str]] = {}

    # -- running -------------------------------------------------------------------------------
    def run(self) -> HostReport:
        ex = HostExplorer(self.program, self._exit)
        entries = ex.entries()
        self.checking = False  # a first pass over the tunnel entries only collects what learn() sees
        for bridge, cube in entries:
            if cube.ports is not None and any(p in self.tunnel_hosts for p in cube.ports):
                self.entry = (bridge, cube)
                self._explore(ex, bridge, cube)
        self.checking = True
        for _ in range(4):  # learn() model to a fixpoint: normally the first full pass is the last
            learns = self._learns(ex)
            ex.set_learned(learns)
            self.reached, self.delivered_in, self.relays, self.routed_in = {}, {}, set(), set()
            self.report.violations = []
            for bridge, cube in entries:
                self.entry = (bridge, cube)
                self._explore(ex, bridge, cube)
            if self._learns(ex) == learns:
                break
        self.report.classes = ex.steps
        self._structure()
        self._reachability()
        self._routed_relay()
        return self.report

    def _explore(self, ex: HostExplorer, bridge: str, cube: Cube) -> None:
        try:
            ex.run(bridge, cube)
        except RuntimeError as e:
            self._add(Violation("limit", self.host, str(e)))

    def _learns(self, ex: HostExplorer) -> dict[tuple[str, Learn, int | None, int | None], frozenset[int]]:
        return {k: frozenset(p for p in ports if self._may_learn(k[3], p)) for k, ports in ex.seen_learns.items()}

    def _may_learn(self, key: int | None, port: int) -> bool:
        """learn() sees a tunnel port with key K only from hosts attached to K's network."""
        net = self.net_by_vni.get(key) if key is not None else None
        remote = self.tunnel_hosts.get(port)
        if net is None or remote is None:
            return True
        attached = self._attached.get(net.name)
        if attached is None:
            attached = self._attached[net.name] = frozenset(self.graph.attached(net.name))
        return remote[0] in attached

    def _add(self, v: Violation) -> None:
        if len(self.report.violations) < 50:
            self.report.violations.append(v)

    def _violation(self, kind: str, cls: HClass, message: str, extra: Cube | None = None) -> None:
        """A violation, with a concrete entry frame when the class (narrowed by `extra`) has one."""
        cube, ex = cls.original()
        if extra is not None:
            narrowed = cube.intersect(extra)
            cube = narrowed if narrowed is not None else cube
        point = witness(cube, relevant(cube, ex))
        values, port = point if point is not None else ({}, None)
        assert self.entry is not None
        bridge = self.entry[0]
        entry_port = port if port is not None else min(self.entry[1].ports or {0})
        path = " -> ".join(f"{b} t{t} p{f.priority}" for b, t, f in cls.path[-12:])
        self._add(Violation(kind, self.host, f"{message} [{path}]", (bridge, entry_port), values,
                            values.get("tun_id"), cls.learned))

    # -- exits ---------------------------------------------------------------------------------
    def _label(self, cls: HClass) -> tuple[Network | None, Port | None]:
        """The network the frame belongs to: its sender's (VM entry) or its key's (tunnel entry)."""
        cube, _ = cls.original()
        sender = None
        if cube.ports is not None and len(cube.ports) == 1:
            sender = self.vm_ports.get(next(iter(cube.ports)))
        if sender is not None:
            return self.topo.networks[sender.network], sender
        key = cube.exact("tun_id")
        return (self.net_by_vni.get(key) if key is not None else None), None

    def _exit(self, e: Exit) -> None:
        if not self.checking:
            return
        self.report.exits += 1
        cls = e.cls
        if e.kind == "loop":
            self._violation("loop", cls, f"forwarding loop: more than {cls.patches - 1} patch-port crossings")
            return
        assert e.port is not None
        label, sender = self._label(cls)
        tagged = cls.cube.intersect(Cube({"vlan_tci": (0x1000, 0x1000)}))
        if tagged is not None and witness(tagged, relevant(tagged, cls.excl)) is not None:
            self._violation("isolation", cls, f"tagged frame leaves on {e.port.name}", Cube({"vlan_tci": (0x1000, 0x1000)}))
        if e.port.type in TUNNEL_TYPES:
            self._tunnel_exit(cls, e, label, sender)
            return
        q = self.vm_ports.get(e.port.ofport)
        if q is None:
            self._violation("isolation", cls, f"frame leaves on {e.port.name}, which is no port of the topology")
            return
        if label is None:
            self._violation("isolation", cls, f"frame with a key of no network delivered to {q.name} ({q.network})")
            return
        if q.network != label.name:
            self._routed(cls, label, self.topo.networks[q.network], f"delivered to {q.name}")
        elif cls.ttl_dec:
            self._violation("isolation", cls, f"TTL decremented on a frame of {label.name} delivered in its own network to {q.name}")
        if sender is not None and q.name == sender.name:
            self._gateway(sender, cls)
        if sender is not None and q.network == sender.network and q.name != sender.name:
            self._mark(sender, q, cls)
        elif q.network != label.name:
            self._mark_routed(sender, label, q, cls)
        elif sender is None and q.network == label.name:
            ports = cls.original()[0].ports or frozenset()
            got = self.delivered_in.setdefault(q.name, set())
            for kind in self._kinds(q, cls):
                got.update((p, kind) for p in ports)

    def _tunnel_exit(self, cls: HClass, e: Exit, label: Network | None, sender: Port | None) -> None:
        assert e.port is not None
        remote, ttype = self.tunnel_hosts[e.port.ofport]
        key = cls.cube.exact("tun_id")
        net = self.net_by_vni.get(key) if key is not None else None
        where = f"{e.port.name} to {remote}"
        if net is None:
            self._violation("tunnel-key", cls, f"frame sent on {where} with key {key if key is None else hex(key)}, no network's")
            return
        if ttype != net.tunnel:
            self._violation("tunnel-key", cls, f"key {net.vni:#x} ({net.name}, {net.tunnel}) sent on a {ttype} tunnel {where}")
        if not self._may_learn(net.vni, e.port.ofport):
            self._violation("isolation", cls, f"frame of {net.name} sent on {where}, a host not attached to {net.name}")
        if label is None:
            self._violation("isolation", cls, f"frame with a key of no network forwarded on {where}")
        elif net.name != label.name:
            self._routed(cls, label, net, f"sent on {where} with key {net.vni:#x}")
        elif cls.ttl_dec:
            self._violation("isolation", cls, f"TTL decremented on a frame of {label.name} sent on {where}")
        if sender is None and label is not None and cls.original()[0].exact("tun_id") is not None:
            self.relays.add((label.vni, remote, net.vni))
        if sender is not None and net.name == sender.network:
            for q in self.graph.ports_of(net.name):
                if q.host == remote:
                    self._mark(sender, q, cls)
            self._l2pop_arp(cls, net, where, remote)
            r = self.graph.router_of(net.name)
            if r is not None and r.mode == "centralized" and r.host == remote and self.host != remote:
                for q in self._routed_targets(net.name):  # handed to the router's host
                    self._mark_routed(sender, net, q, cls, rmac=mac(r.mac(net.name)))
        elif label is not None and net.name != label.name:
            for q in self.graph.ports_of(net.name):
                if q.host == remote:
                    self._mark_routed(sender, label, q, cls)

    def _routed(self, cls: HClass, src: Network, dst: Network, what: str) -> None:
        r = self.graph.router_of(src.name)
        msg = f"frame of {src.name} {what} in {dst.name}"
        if r is None or dst.name not in r.networks:
            self._violation("isolation", cls, f"{msg}: no router joins them")
            return
        orig, _ = cls.original()
        rmac_src, rmac_dst = mac(r.mac(src.name)), mac(r.mac(dst.name))
        if orig.exact("dl_type") != ETH_TYPE_IP or orig.exact("dl_dst") != rmac_src:
            self._violation("isolation", cls, f"{msg} through router {r.name}, but it was not IPv4 to the router's MAC")
        elif cls.ttl_dec != 1:
            self._violation("isolation", cls, f"{msg} through router {r.name} with TTL decremented {cls.ttl_dec} times")
        elif cls.cube.exact("dl_src") != rmac_dst:
            self._violation("isolation", cls, f"{msg} through router {r.name} without the router's MAC as source")

    def _routed_targets(self, network: str) -> list[Port]:
        r = self.graph.router_of(network)
        if r is None:
            return []
        return [q for n in r.networks if n != network and n in self.topo.networks for q in self.graph.ports_of(n) if q.ip]

    def _mark_routed(self, sender: Port | None, src: Network, q: Port, cls: HClass, rmac: int | None = None) -> None:
        """Record that IPv4 for q's address, from a port of `src`, reaches q (or its router's host)."""
        if q.ip is None:
            return
        want = {"dl_type": (ETH_TYPE_IP, 0xFFFF), "nw_dst": (ip4_int(q.ip), 0xFFFFFFFF)}
        if rmac is not None:
            want["dl_dst"] = (rmac, (1 << 48) - 1)
        c = cls.cube.intersect(Cube(want))
        if c is None or witness(c, relevant(c, cls.excl)) is None:
            return
        if sender is not None:
            self.reached.setdefault(sender.name, set()).add((q.name, ROUTED_TO))
        else:
            self.routed_in.add((src.name, q.name))

    def _gateway(self, sender: Port, cls: HClass) -> None:
        """A frame back to its sender: the gateway's ARP or ping answer, if it is one."""
        net = self.topo.networks[sender.network]
        r = self.graph.router_of(net.name)
        if r is None or net.gateway is None:
            return
        gw, rmac, c = ip4_int(net.gateway), mac(r.mac(net.name)), cls.cube
        got = self.reached.setdefault(sender.name, set())
        if c.exact("dl_src") == rmac and c.exact("dl_type") == ETH_TYPE_ARP and c.exact("arp_op") == ARP_REPLY \
                and c.exact("arp_spa") == gw and c.exact("dl_dst") == mac(sender.mac):
            got.add((sender.name, GATEWAY[0]))
        if c.exact("dl_src") == rmac and c.exact("dl_type") == ETH_TYPE_IP and c.exact("icmp_type") == ICMP_ECHO_REPLY \
                and c.exact("nw_src") == gw:
            got.add((sender.name, GATEWAY[1]))

    def _l2pop_arp(self, cls: HClass, net: Network, where: str, remote: str) -> None:
        """l2pop: a broadcast ARP request for an address the network's ports have never leaves on a
        tunnel, and a unicast to a port's MAC goes only toward that port's host."""
        if net.mode != "l2pop":
            return
        for q in self.graph.ports_of(net.name):
            if q.host not in (remote, self.host):
                uni = Cube({"dl_dst": (mac(q.mac), (1 << 48) - 1), "dl_type": (ETH_TYPE_IP, 0xFFFF)})
                c = cls.cube.intersect(uni)
                if c is not None and witness(c, relevant(c, cls.excl)) is not None:
                    self._violation("leak", cls, f"l2pop: IPv4 unicast to {q.name}'s MAC (on {q.host}) sent on {where}", uni)
                    return
            if q.ip is None:
                continue
            arp = Cube({"dl_dst": (BROADCAST, BROADCAST), "dl_type": (ETH_TYPE_ARP, 0xFFFF),
                        "arp_op": (ARP_REQUEST, 0xFFFF), "arp_tpa": (ip4_int(q.ip), 0xFFFFFFFF)})
            c = cls.cube.intersect(arp)
            if c is not None and witness(c, relevant(c, cls.excl)) is not None:
                self._violation("leak", cls, f"l2pop: ARP request for {q.ip} ({q.name}) flooded on {where}", arp)
                return

    def _mark(self, sender: Port, q: Port, cls: HClass) -> None:
        got = self.reached.setdefault(sender.name, set())
        if (q.name, UNICAST_TO) in got and (q.name, BROADCAST_TO) in got:
            return
        got.update((q.name, kind) for kind in self._kinds(q, cls))

    def _kinds(self, q: Port, cls: HClass) -> list[str]:
        """Which of (unicast to q's MAC, broadcast) this class contains."""
        out = []
        for kind, dst in ((UNICAST_TO, mac(q.mac)), (BROADCAST_TO, BROADCAST)):
            c = cls.cube.intersect(Cube({"dl_dst": (dst, (1 << 48) - 1)}))
            if c is not None and witness(c, relevant(c, cls.excl)) is not None:
                out.append(kind)
        return out

    # -- after exploring -----------------------------------------------------------------------
    def _reachability(self) -> None:
        """Sender side: each local port's frames leave toward every other port of its network
        (delivered here, or a tunnel to that port's host), unicast to its MAC and broadcast.
        Receiver side: frames arriving with the network's key from every host with a port on it
        are delivered to each local port (checked in `_exit` by recording the tunnel ports)."""
        tunnels_to = {(h, t): p for p, (h, t) in self.tunnel_hosts.items()}
        for p in self.graph.ports_on(self.host):
            got = self.reached.get(p.name, set())
            for q in self.graph.ports_of(p.network):
                if q.name == p.name:
                    continue
                for kind in (UNICAST_TO, BROADCAST_TO):
                    if (q.name, kind) not in got:
                        what = "unicast to its MAC" if kind == UNICAST_TO else "broadcast"
                        self._add(Violation("reachability", self.host, f"{p.name} cannot reach {q.name} ({what}) in {p.network}"))
                        break
            r = self.graph.router_of(p.network)
            wanted = [(q.name, ROUTED_TO) for q in self._routed_targets(p.network)]
            if r is not None and self.topo.networks[p.network].gateway is not None:
                wanted += [(p.name, g) for g in GATEWAY]
            for want in wanted:
                if want not in got:
                    self._add(Violation("reachability", self.host, f"{p.name} ({p.network}): no {want[1]} to {want[0]}"))
                    break
            net = self.topo.networks[p.network]
            need = {(tunnels_to.get((h, net.tunnel)), kind) for h in self.graph.remote_hosts(self.host, p.network)
                    for kind in (UNICAST_TO, BROADCAST_TO)}
            missing = need - self.delivered_in.get(p.name, set())
            if missing:
                self._add(Violation("reachability", self.host,
                                    f"{p.name} receives no frames of {p.network} from tunnel port(s) {sorted(missing, key=str)}"))

    def _routed_relay(self) -> None:
        """A centralized router's host routes what the other hosts hand it."""
        for r in self.graph.routers_on(self.host):
            if r.mode != "centralized" or r.host != self.host:
                continue
            for n in r.networks:
                if not [p for p in self.graph.ports_of(n) if p.host != self.host]:
                    continue
                for q in self._routed_targets(n):
                    if (n, q.name) not in self.routed_in:
                        self._add(Violation("reachability", self.host, f"router {r.name} does not route {n} to {q.name}"))

    def _structure(self) -> None:
        """Flood groups hold exactly the VTEPs that host the network; every key means its network."""
        vlans = self.program.local_vlans
        by_vlan = {v: n for n, v in vlans.items()}
        tun = self.program.bridge("tun")
        tunnels_to = {(h, t): p for p, (h, t) in self.tunnel_hosts.items()}
        groups = {g.group_id: g for g in tun.groups}
        for f in tun.flows:
            md = f.match_dict
            if "tun_id" in md:
                key = md["tun_id"]
                net = self.net_by_vni.get(key) if isinstance(key, int) else None
                sets = [a.value & 0xFFF for a in f.actions if isinstance(a, SetField) and a.field == "vlan_vid"]
                if net is None:
                    if f.actions:
                        self._add(Violation("tunnel-key", self.host, f"key {key} of no network is accepted: {f}"))
                    continue
                want_table = self.pipelines.tun.tunnel_table(net.tunnel).id
                if f.table != want_table or any(s != vlans.get(net.name) for s in sets):
                    self._add(Violation("tunnel-key", self.host,
                                        f"key {net.vni:#x} ({net.name}) means VLAN {sets} in table {f.table} here "
                                        f"(expected VLAN {vlans.get(net.name)} in table {want_table}): {f}"))
            for a in f.actions:
                if not isinstance(a, Group):
                    continue
                v = md.get("dl_vlan")
                net_name = by_vlan.get(v) if isinstance(v, int) else None
                g = groups.get(a.group_id)
                if net_name is None or g is None:
                    self._add(Violation("flood-group", self.host, f"group {a.group_id} used for no network's VLAN: {f}"))
                    continue
                net = self.topo.networks[net_name]
                want = {(net.vni, tunnels_to.get((h, net.tunnel))) for h in self.graph.remote_hosts(self.host, net_name)}
                have = set()
                for b in g.buckets:
                    keys = [x.value for x in b.actions if isinstance(x, SetField) and x.field == "tun_id"]
                    outs = [x.port for x in b.actions if hasattr(x, "port")]
                    have.add((keys[-1] if keys else None, outs[-1] if outs else None))
                if have != want:
                    self._add(Violation("flood-group", self.host,
                                        f"flood group {g.group_id} of {net_name}: extra {sorted(have - want, key=str)}, "
                                        f"missing {sorted(want - have, key=str)} (key, tunnel port)"))
