"""The compiler: topology -> the complete OpenFlow program of every bridge of a host.

Pure and deterministic: no I/O, no Ryu, no clocks; the same topology gives the same flows in the same
order. One function per table concern (as Neutron's br_tun.py does), each returning flows; every flow
is checked against the declared pipeline (pipelines/*.yaml) before it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import eq, itemgetter
from typing import Generator, Iterable

from . import flow as F
from .fields import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV6,
    IPPROTO_ICMPV6,
    MULTICAST_BIT,
    ND_ADVERT,
    ND_SOLICIT,
    OFPVID_PRESENT,
    ipv4,
    ipv6,
    mac,
)
from .flow import Flow
from .graph import PATCH_OFPORT, TopologyGraph, Tunnel
from .model import Network, Topology
from .pipeline import Pipeline, Pipelines, Table
from .program import COOKIE_LEARNED, COOKIE_STATIC, BridgeProgram, HostProgram, PortConfig

NA_FLAGS_SOLICITED_OVERRIDE = 0x60000000  # nd_reserved: S and O set, R clear (not a router)
ND_OPTION_TARGET_LL = 2  # nd_options_type of a target link-layer address option
MULTICAST = (MULTICAST_BIT, MULTICAST_BIT)  # dl_dst=01:00:00:00:00:00/01:00:00:00:00:00
UNICAST = (0, MULTICAST_BIT)
NO_VLAN = (0x0000, 0x1FFF)  # vlan_tci=0x0000/0x1fff: no VLAN header

# Actions every responder flow shares (one object each: cheaper to build, encode and check).
ARP_REPLY_HEAD = (F.Move("dl_src", "dl_dst"),)
ARP_REPLY_MID = (F.SetField("arp_op", ARP_REPLY), F.Move("arp_sha", "arp_tha"), F.Move("arp_spa", "arp_tpa"))
NA_FROM_NS = (F.SetField("icmpv6_type", ND_ADVERT), F.SetField("icmpv6_code", 0),
              F.SetField("nd_reserved", NA_FLAGS_SOLICITED_OVERRIDE), F.SetField("nd_options_type", ND_OPTION_TARGET_LL))
BACK = F.Output(F.IN_PORT)

# br-tun's learn_into table (unicast) holds where remote MACs are: learned ones (learn() writes them)
# and, above them, pre-populated (l2pop) ones. The live controller deletes learned entries there.
LEARN_TABLE: int = Pipelines.load().tun["learn"].learn_into or 0
PRIO_L2POP = 2
PRIO_LEARNED = 1
# A moved VM's hint outlives OVS's datapath flows from before the move (other_config:max-idle,
# 10 s by default): afterwards nothing can re-apply the old learn() any more.
HINT_MIN_S = 10


def vid(vlan: int) -> int:
    return OFPVID_PRESENT | vlan


def flood_group_id(net: Network) -> int:
    """A network's flood group is numbered by its VNI: unique, stable, readable in dumps."""
    return net.vni


@dataclass(frozen=True, eq=False)
class NetworkPiece:
    """One network's share of one host's program: its br-tun and br-int flows and its flood group.

    A host's program is its host-wide flows (classify by port, learn(), table misses) plus one piece
    per network it is on. A piece depends only on `piece_key`, so a compile that is given the pieces
    of an earlier compile (`PieceMemo`) rebuilds only the networks an edit touched; the pieces that
    come back are the same objects, which lets the live controller reuse their encoding too.
    """

    tun: tuple[Flow, ...]  # sorted by Flow.sort_key
    int: tuple[Flow, ...]
    group: F.GroupEntry | None
    tun_keys: tuple[tuple, ...] = ()  # the flows' sort keys, kept so assembling only merges
    int_keys: tuple[tuple, ...] = ()


class PieceMemo:
    """Network pieces of the hosts compiled so far, reusable by the next compile.

    `PieceMemo(previous)` starts empty but can take any piece `previous` holds; it keeps only what
    was used (or carried over with `carry`), so it never grows beyond one topology's worth.
    """

    def __init__(self, previous: "PieceMemo | None" = None) -> None:
        self._previous = previous._hosts if previous is not None else {}
        self._hosts: dict[str, dict[tuple, "NetworkPiece | tuple"]] = {}

    def lookup(self, host: str, key: tuple) -> NetworkPiece | None:
        """The piece for `key`, from this memo or the previous one (then kept in this one)."""
        mine = self._hosts.setdefault(host, {})
        found = mine.get(key)
        if found is None:
            found = self._previous.get(host, {}).get(key)
            if found is not None:
                mine[key] = found
        return found  # type: ignore[return-value]

    def store(self, host: str, key: tuple, piece: NetworkPiece) -> NetworkPiece:
        self._hosts.setdefault(host, {})[key] = piece
        return piece

    def same(self, host: str, name: str, value: tuple) -> tuple:
        """`value`, or the equal value recorded under `name` last time (then the very same object,
        which is what lets callers reuse work done for it)."""
        key = ("same", name)
        old = self._previous.get(host, {}).get(key)
        if old is not None and old == value:
            value = old
        self._hosts.setdefault(host, {})[key] = value  # type: ignore[assignment]
        return value

    def carry(self, host: str) -> None:
        """Keep `host`'s pieces from the previous memo as they are (its program was reused whole)."""
        if host in self._previous:
            self._hosts[host] = dict(self._previous[host])


class HostCompiler:
    """Compiles one host. Holds the per-host facts (VLANs, ofports, tunnels) the table functions share.

    Table functions come in two kinds: host-wide ones (`tun_classify`, `tun_from_int`, `tun_learn`)
    and per-network ones, which take the network and return only its flows.
    """

    def __init__(self, graph: TopologyGraph, host: str, memo: PieceMemo | None = None,
                 pipelines: Pipelines | None = None):
        self.graph = graph
        self.topo = graph.topo
        self.host = self.topo.hosts[host]
        self.memo = memo
        self.vlans = graph.local_vlans(host)
        self.vm_ofports = graph.vm_ofports(host)
        self.tunnels = graph.tunnels(host)
        self.tunnel_by_key = {(t.remote, t.type): t for t in self.tunnels}
        self.networks = graph.networks_on(host)  # sorted by VNI
        self.ports = graph.ports_on(host)
        self.local_ports: dict[str, list] = {}
        for port in self.ports:
            self.local_ports.setdefault(port.network, []).append(port)
        self.pipelines = pipelines or Pipelines.load()
        self.tun, self.int = self.pipelines.tun, self.pipelines.int  # tables by name: tun["flood"]
        self.na_from_ns = (*NA_FROM_NS, self.tun["nd_reply"].goto())
        learn_into = self.tun["learn"].learn_into
        assert learn_into is not None, "br-tun's learn table must declare learn_into"
        self.learn_into: int = learn_into

    # -- shared facts ------------------------------------------------------------------------------
    def remote_tunnels(self, net: Network) -> list[Tunnel]:
        """The head-end replication list of a network, as tunnel ports (sorted by ofport)."""
        return sorted(
            (self.tunnel_by_key[(h, net.tunnel)] for h in self.graph.remote_hosts(self.host.name, net.name)),
            key=lambda t: t.ofport,
        )

    def has_remotes(self, net: Network) -> bool:
        return bool(self.graph.remote_hosts(self.host.name, net.name))

    def piece_key(self, net: Network) -> tuple:
        """Everything `network_piece_steps(net)` reads: the network, its local VLAN, the tunnel port of
        each remote VTEP hosting it, its ports (all of them in l2pop mode, else the local ones) and
        the local ports' OpenFlow numbers."""
        local = tuple(self.local_ports.get(net.name, ()))
        ports = tuple(self.graph.ports_of(net.name)) if net.mode == "l2pop" else local
        return (net, self.vlans[net.name], tuple((t.remote, t.ofport) for t in self.remote_tunnels(net)),
                ports, tuple(self.vm_ofports[p.name] for p in local))

    # -- br-tun: host-wide -------------------------------------------------------------------------
    def tun_classify(self) -> Iterable[Flow]:
        yield make(self.tun["classify"], 1, {"in_port": PATCH_OFPORT}, [self.tun["from_int"].goto()])
        for t in self.tunnels:
            yield make(self.tun["classify"], 1, {"in_port": t.ofport}, [self.tun.tunnel_table(t.type).goto()])

    def tun_from_int(self) -> Iterable[Flow]:
        yield make(self.tun["from_int"], 1, {"dl_dst": UNICAST}, [self.tun["unicast"].goto()])
        yield make(self.tun["from_int"], 1, {"dl_dst": MULTICAST}, [self.tun["flood"].goto()])

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
                table=self.learn_into, priority=PRIO_LEARNED, cookie=COOKIE_LEARNED,
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
                yield make(self.tun["learn"], 1, {}, actions)
            else:
                for net in nets:
                    yield make(self.tun["learn"], 2, {"dl_vlan": self.vlans[net.name]}, actions)

    # -- br-tun: per network -----------------------------------------------------------------------
    def tun_key_to_vlan(self, net: Network) -> Iterable[Flow]:
        """Only networks this host shares with some other VTEP accept tunnel traffic; unknown keys drop."""
        if self.has_remotes(net):
            yield make(
                self.tun.tunnel_table(net.tunnel), 1, {"tun_id": net.vni},
                [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[net.name])), self.tun["learn"].goto()],
            )

    def tun_unicast(self, net: Network) -> Iterable[Flow]:
        """l2pop: every remote port of an l2pop network pre-installed, above anything learned.
        (This is the one per-remote-VM loop: actions are shared values, built once per VTEP.)"""
        if net.mode != "l2pop":
            return
        vlan, pop, set_key = self.vlans[net.name], F.PopVlan(), F.SetField("tun_id", net.vni)
        table = self.learn_into
        actions = {h: (pop, set_key, F.Output(self.tunnel_by_key[(h, net.tunnel)].ofport))
                   for h in self.graph.remote_hosts(self.host.name, net.name)}
        for port in self.graph.ports_of(net.name):
            if port.host != self.host.name:
                yield Flow(table, PRIO_L2POP, (("dl_vlan", vlan), ("dl_dst", mac(port.mac))), actions[port.host],
                           COOKIE_STATIC)

    def tun_arp_responder(self, net: Network) -> Iterable[Flow]:
        """l2pop (seed 002): ARP requests for known IPs never reach the underlay. A remote VM's IP is
        answered here, in the switch (reply built from the request, sent back where it came from);
        a local VM's IP is dropped here because br-int already delivered the request to that VM."""
        if net.mode != "l2pop" or not self.has_remotes(net):
            return
        vlan, responder = self.vlans[net.name], self.tun["arp_responder"]
        yield make(self.tun["from_int"], 2, {"dl_vlan": vlan, "dl_dst": BROADCAST, "dl_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST},
                   [responder.goto()])
        for port in self.graph.ports_of(net.name):
            if port.ip is None:
                continue
            match = {"dl_vlan": vlan, "dl_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ipv4(port.ip)}
            if port.host == self.host.name:
                yield make(responder, 1, match, [])
                continue
            addr = mac(port.mac)
            yield make(responder, 1, match, [  # eth_dst := eth_src, eth_src := addr, op := reply, swap, answer
                *ARP_REPLY_HEAD, F.SetField("eth_src", addr), *ARP_REPLY_MID,
                F.SetField("arp_sha", addr), F.SetField("arp_spa", ipv4(port.ip)), BACK,
            ])

    def tun_nd_responder(self, net: Network) -> Iterable[Flow]:
        """l2pop for IPv6, which Neutron does not do: a neighbour solicitation for a remote VM's
        address becomes an advertisement in the switch (two tables: OVS accepts nd_tll only on a
        frame already matched as an advertisement). Duplicate address detection (source ::) floods."""
        if net.mode != "l2pop" or not self.has_remotes(net):
            return
        icmp6 = {"dl_type": ETH_TYPE_IPV6, "nw_proto": IPPROTO_ICMPV6}
        vlan, responder = self.vlans[net.name], self.tun["arp_responder"]
        yield make(self.tun["from_int"], 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT}, [responder.goto()])
        yield make(responder, 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "ipv6_src": 0}, [self.tun["flood"].goto()])
        for port in self.graph.ports_of(net.name):
            if port.ipv6 is None:
                continue
            target = ipv6(port.ipv6)
            solicit = {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "nd_target": target}
            if port.host == self.host.name:
                yield make(responder, 1, solicit, [])
                continue
            yield make(responder, 1, solicit, self.na_from_ns)
            yield make(self.tun["nd_reply"], 1, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_ADVERT, "nd_target": target}, [
                F.SetField("nd_tll", mac(port.mac)),
                F.Move("dl_src", "dl_dst"),
                F.SetField("eth_src", mac(port.mac)),
                F.Move("ipv6_src", "ipv6_dst"),
                F.SetField("ipv6_src", target),
                BACK,
            ])

    def tun_flood(self, net: Network) -> Iterable[Flow]:
        """Head-end replication (seed 004): one copy per VTEP hosting the network, none elsewhere.
        The list lives in a group (type all, a bucket per remote VTEP), so a VTEP joining or leaving
        a network is one group-mod and no flow changes."""
        if self.has_remotes(net):
            yield make(self.tun["flood"], 1, {"dl_vlan": self.vlans[net.name]}, [F.PopVlan(), F.Group(flood_group_id(net))])

    def tun_group(self, net: Network) -> F.GroupEntry | None:
        tunnels = self.remote_tunnels(net)
        if not tunnels:
            return None
        buckets = tuple(F.Bucket((F.SetField("tun_id", net.vni), F.Output(t.ofport))) for t in tunnels)
        return F.GroupEntry(flood_group_id(net), "all", buckets)

    def tun_moved(self, net: Network, moved: dict[int, str]) -> list[Flow]:
        """A learn network's VMs moved (MAC -> new host), as the live controller sees a topology
        edit: entries that send their frames to the new VTEP at once, above whatever learn()
        holds, carrying learn()'s cookie and timeouts (they are learned state the controller
        supplies, not program: reconcile keeps them and they expire like learned entries). OVS
        may re-apply learn() with the old VTEP from traffic it saw before the move; this masks
        that until those datapath flows are gone. l2pop networks have this in their program."""
        if net.mode == "l2pop" or not self.has_remotes(net):
            return []
        vlan, set_key = self.vlans[net.name], F.SetField("tun_id", net.vni)
        hard = max(net.hard_timeout, HINT_MIN_S) if net.hard_timeout else 0
        flows = [Flow.make(self.learn_into, PRIO_L2POP, {"dl_vlan": vlan, "dl_dst": mac},
                           (F.PopVlan(), set_key, F.Output(self.tunnel_by_key[(host, net.tunnel)].ofport)),
                           COOKIE_LEARNED, hard, net.idle_timeout)
                 for mac, host in sorted(moved.items()) if host != self.host.name]
        self.tun.check_all(flows)
        return flows

    # -- br-int: per network -----------------------------------------------------------------------
    def int_classify(self, net: Network) -> Iterable[Flow]:
        """A VM's frames are tagged with its network's local VLAN (only untagged, only its own MAC);
        frames from br-tun already carry the VLAN."""
        for port in self.local_ports.get(net.name, ()):
            yield make(
                self.int["classify"], 1, {"in_port": self.vm_ofports[port.name], "dl_src": mac(port.mac), "vlan_tci": NO_VLAN},
                [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[net.name])), self.int["from_vm"].goto()],
            )
        if self.has_remotes(net):
            yield make(self.int["classify"], 1, {"in_port": PATCH_OFPORT, "dl_vlan": self.vlans[net.name]}, [self.int["to_vm"].goto()])

    def int_from_vm(self, net: Network) -> Iterable[Flow]:
        vlan = self.vlans[net.name]
        remotes = self.has_remotes(net)
        to_tun = [F.Output(PATCH_OFPORT)] if remotes else []
        yield make(self.int["from_vm"], 2, {"dl_vlan": vlan, "dl_dst": MULTICAST}, [*to_tun, self.int["to_vm"].goto()])
        if remotes:
            yield make(self.int["from_vm"], 1, {"dl_vlan": vlan}, to_tun)
        for port in self.local_ports.get(net.name, ()):
            yield make(self.int["from_vm"], 3, {"dl_vlan": vlan, "dl_dst": mac(port.mac)}, [self.int["to_vm"].goto()])

    def int_to_vm(self, net: Network) -> Iterable[Flow]:
        vlan = self.vlans[net.name]
        ofports = []
        for port in self.local_ports.get(net.name, ()):
            ofport = self.vm_ofports[port.name]
            ofports.append(ofport)
            yield make(self.int["to_vm"], 2, {"dl_vlan": vlan, "dl_dst": mac(port.mac)}, [F.PopVlan(), F.Output(ofport)])
        yield make(self.int["to_vm"], 1, {"dl_vlan": vlan, "dl_dst": MULTICAST}, [F.PopVlan(), *(F.Output(p) for p in sorted(ofports))])

    # -- assembly ----------------------------------------------------------------------------------
    def network_piece_steps(self, net: Network, every: int = 1000) -> Generator[None, None, NetworkPiece]:
        """All of one network's flows on this host, checked against the pipelines, built in steps:
        yields after about `every` flows' worth of work and returns the piece (`finish` runs it
        through). A caller that must stay responsive (the live controller compiling ahead while
        switches connect) does other work at each yield; the result is the same."""
        tun: list[Flow] = []
        for gen in (self.tun_key_to_vlan(net), self.tun_unicast(net), self.tun_arp_responder(net),
                    self.tun_nd_responder(net), self.tun_flood(net)):
            for f in gen:
                tun.append(f)
                if len(tun) % every == 0:
                    yield
        int_ = (*self.int_classify(net), *self.int_from_vm(net), *self.int_to_vm(net))
        group = self.tun_group(net)
        for i in range(0, len(tun), every):
            check(self.tun, tuple(tun[i:i + every]), (group,) if group else ())
            yield
        check(self.int, int_)
        (tun_sorted, tun_keys), (int_sorted, int_keys) = keyed(tun), keyed(int_)
        return NetworkPiece(tun_sorted, int_sorted, group, tun_keys, int_keys)

    def piece_steps(self, net: Network, every: int = 1000) -> Generator[None, None, NetworkPiece]:
        """The network's piece from the memo if it has one for `piece_key(net)`, else built (in
        steps, see network_piece_steps) and put there."""
        if self.memo is None:
            return (yield from self.network_piece_steps(net, every))
        key = self.piece_key(net)
        found = self.memo.lookup(self.host.name, key)
        if found is None:
            found = self.memo.store(self.host.name, key, (yield from self.network_piece_steps(net, every)))
        return found

    def pieces(self) -> list[NetworkPiece]:
        return [finish(self.piece_steps(net)) for net in self.networks]

    def compile(self, datapath_type: str | None = None) -> HostProgram:
        pieces = self.pieces()
        tun_host = (*self.tun_classify(), *self.tun_from_int(), *self.tun_learn(), *self.tun.miss_flows(COOKIE_STATIC))
        int_host = tuple(self.int.miss_flows(COOKIE_STATIC))
        groups = tuple(sorted((p.group for p in pieces if p.group is not None), key=lambda g: g.group_id))
        check(self.tun, tun_host, groups)
        check(self.int, int_host)
        dpid_int, dpid_tun = self.graph.datapath_ids(self.host.name)
        dp_type = datapath_type or self.host.datapath_type

        tun_ports = [PortConfig("patch-int", PATCH_OFPORT, "patch", (("peer", "patch-tun"),), f"patch to {self.host.bridge_int}")]
        for t in self.tunnels:
            opts = (("key", "flow"), ("local_ip", self.host.vtep), ("remote_ip", t.remote_ip))
            tun_ports.append(PortConfig(t.name, t.ofport, t.type, opts, f"{t.type} tunnel to {t.remote} {t.remote_ip}"))
        int_ports = [PortConfig("patch-tun", PATCH_OFPORT, "patch", (("peer", "patch-int"),), f"patch to {self.host.bridge_tun}")]
        for port in self.ports:
            int_ports.append(PortConfig(port.iface, self.vm_ofports[port.name], "", (), f"VM port {port.name} ({port.network}, {port.mac})"))
        int_ports.sort(key=lambda p: p.ofport)

        int_wide, tun_wide = keyed(int_host), keyed(tun_host)
        if self.memo is not None:  # host-wide flows change rarely: keep the old objects when equal
            int_wide = self.memo.same(self.host.name, "int", int_wide)
            tun_wide = self.memo.same(self.host.name, "tun", tun_wide)
        int_parts = (int_wide, *((p.int, p.int_keys) for p in pieces))
        tun_parts = (tun_wide, *((p.tun, p.tun_keys) for p in pieces))
        br_int = assemble(self.host.bridge_int, "int", dp_type, dpid_int, int_ports, int_parts, ())
        br_tun = assemble(self.host.bridge_tun, "tun", dp_type, dpid_tun, tun_ports, tun_parts, groups)
        return HostProgram(self.host.name, self.host.vtep, (br_int, br_tun), dict(self.vlans))


def finish(steps: Generator[None, None, NetworkPiece]) -> NetworkPiece:
    """Run a step-wise build (HostCompiler.piece_steps) to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def make(table: Table, priority: int, match: dict[str, F.MatchValue], actions: Iterable[F.Action]) -> Flow:
    """A flow of the compiled program in `table` (every one carries COOKIE_STATIC)."""
    return table.flow(priority, match, actions, COOKIE_STATIC)


def check(pipeline: Pipeline, flows: tuple[Flow, ...], groups: tuple[F.GroupEntry, ...] = ()) -> None:
    """Every flow keeps its table's contract and uses only groups the program defines. (That no
    two flows share an identity is checked when a bridge is assembled.)"""
    missing = pipeline.check_all(flows) - {g.group_id for g in groups}
    if missing:
        f = next(f for f in flows if any(type(a) is F.Group and a.group_id in missing for a in f.actions))
        raise AssertionError(f"flow outputs to group {sorted(missing)[0]}, which the program does not define: {f}")


def keyed(flows: Iterable[Flow]) -> tuple[tuple[Flow, ...], tuple[tuple, ...]]:
    """Flows sorted by Flow.sort_key, and those keys."""
    pairs = sorted(((f.sort_key(), f) for f in flows), key=itemgetter(0))
    return tuple(f for _, f in pairs), tuple(k for k, _ in pairs)


def assemble(name: str, role: str, datapath_type: str, dpid: int, ports: list[PortConfig],
             parts: tuple[tuple[tuple[Flow, ...], tuple[tuple, ...]], ...], groups: tuple[F.GroupEntry, ...]) -> BridgeProgram:
    """One bridge from checked, sorted parts (host-wide flows, then one part per network) and
    their sort keys: merged in key order. Parts are disjoint by construction (each network's flows
    match its own VLAN, tunnel key or VM ports); equal identities would have equal sort keys, side
    by side after the merge, so one pass over neighbours proves it."""
    pairs = [pair for flows, keys in parts for pair in zip(keys, flows)]
    pairs.sort(key=itemgetter(0))  # sorted runs: a merge, not a sort
    keys = [k for k, _ in pairs]
    if any(map(eq, keys, keys[1:])):
        dup = next(i for i in range(len(keys) - 1) if keys[i] == keys[i + 1])
        raise AssertionError(f"compiler emitted two flows with the same match and priority: {pairs[dup][1]} / {pairs[dup + 1][1]}")
    flows = tuple(f for _, f in pairs)
    return BridgeProgram(name, role, datapath_type, dpid, tuple(ports), flows, groups, tuple(f for f, _ in parts))


def compile_host(topo: Topology, host: str, datapath_type: str | None = None, graph: TopologyGraph | None = None,
                 memo: PieceMemo | None = None, pipelines: Pipelines | None = None) -> HostProgram:
    """The program of one host. Pass a prebuilt `graph` when compiling many hosts of one topology,
    a `memo` to reuse the network pieces of an earlier compile (the result is the same), and
    `pipelines` to compile against other declarations than pipelines/ (tests renumber tables)."""
    if host not in topo.hosts:
        raise KeyError(host)
    if graph is not None and graph.focus not in (None, host):
        raise ValueError(f"graph focused on {graph.focus}, not {host}")
    return HostCompiler(graph or TopologyGraph(topo, focus=host), host, memo, pipelines).compile(datapath_type)


def compile_all(topo: Topology, datapath_type: str | None = None, memo: PieceMemo | None = None,
                pipelines: Pipelines | None = None) -> dict[str, HostProgram]:
    graph = TopologyGraph(topo)
    return {h: compile_host(topo, h, datapath_type, graph, memo, pipelines) for h in sorted(topo.hosts)}
