"""A loaded topology as the controller holds it: per datapath, its target (flows, groups, bytes).

Loading validates the whole file but compiles nothing: a host is compiled (both bridges) the first
time one of its switches needs it, from network pieces the controller may have compiled ahead.
Given the topology loaded before, a host whose inputs did not change (graph.fingerprint) takes its
old targets as they are, and a changed host is compiled through the previous compile's network
pieces and encodings: an edit costs the networks it touches, not the hosts.

Numbering is remembered per host (`memory`, graph.allocate): each load starts from the allocations
in use after the previous one, so an edit never renumbers a network's local VLAN or a port's
OpenFlow number, and the switches of unrelated networks get nothing. A new controller has no memory;
the OpenFlow port numbers a connecting switch reports (port-desc) fill it (`remember_ports`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..compiler import PieceMemo, compile_host
from ..flow import Flow, GroupEntry
from ..graph import PATCH_OFPORT, Allocation, TopologyGraph
from ..model import load_topology
from ..openflow.encode import Encoder, canonical_group
from ..program import TUNNEL_TYPES

Part = tuple[Flow, ...]


@dataclass(frozen=True)
class Target:
    """What one datapath must hold (flows and groups in canonical form).

    `keys` maps each flow's wire key (`Encoder.flow_key`) to the flow, computed once per load, so
    reading back a switch that holds exactly these flows needs no decoding at all.
    """

    host: str
    bridge: str
    flows: tuple[Flow, ...]
    groups: tuple[GroupEntry, ...]
    keys: dict[bytes, Flow] = field(default_factory=dict, compare=False, repr=False)
    # id(flow) -> its ADD flow-mod without header, for flows of `flows` (kept alive by it)
    add_tails: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)
    parts: tuple[Part, ...] = field(default=(), compare=False, repr=False)  # what it was encoded from

    @property
    def label(self) -> str:
        return f"{self.host}/{self.bridge}"


@dataclass(frozen=True)
class Encoded:
    """One compiled part, encoded: canonical flows, and by them their wire keys and ADD bytes."""

    flows: tuple[Flow, ...]
    keys: dict[bytes, Flow]
    tails: dict[int, bytes]

    @staticmethod
    def of(triples: list[tuple[Flow, bytes, bytes]]) -> Encoded:
        return Encoded(tuple(f for f, _, _ in triples), {k: f for f, _, k in triples},
                       {id(f): t for f, t, _ in triples})


class EncodedParts:
    """Encodings per compiled part, reused across reloads.

    Keyed by the part object's id (program.BridgeProgram.parts): a network the edit did not touch
    comes back from the compiler's memo as the same tuple, so it is not encoded again. Entries hold
    their part, so an id cannot be reused while its entry lives; like compiler.PieceMemo, a new
    generation takes from the previous one and keeps only what is used."""

    def __init__(self, previous: EncodedParts | None = None) -> None:
        self._previous = previous._parts if previous is not None else {}
        self._parts: dict[int, tuple[Part, Encoded]] = {}

    def get(self, part: Part, enc: Encoder) -> Encoded:
        for _ in self.get_steps(part, enc, len(part) or 1):
            pass
        return self._parts[id(part)][1]

    def get_steps(self, part: Part, enc: Encoder, every: int = 1000) -> Iterator[None]:
        """Encode `part` unless this or the previous generation has it, yielding after every
        `every` flows, so idle-time work can pause in between."""
        hit = self._parts.get(id(part)) or self._previous.get(id(part))
        if hit is None or hit[0] is not part:
            encoded: list[tuple[Flow, bytes, bytes]] = []
            for i in range(0, len(part), every):
                encoded += enc.encode_flows(part[i:i + every])
                yield
            hit = (part, Encoded.of(encoded))
        self._parts[id(part)] = hit

    def carry(self, parts: tuple[Part, ...]) -> None:
        for part in parts:
            hit = self._previous.get(id(part))
            if hit is not None and hit[0] is part:
                self._parts[id(part)] = hit


def bridge_target(host: str, b: Any, enc: Encoder, cache: EncodedParts | None = None) -> Target:
    """A compiled bridge (program.BridgeProgram) in the form the diff needs, merged from its parts'
    encodings (dict merges: no per-flow work for reused parts)."""
    flows: list[Flow] = []
    keys: dict[bytes, Flow] = {}
    tails: dict[int, bytes] = {}
    parts: tuple[Part, ...] = b.parts or (b.flows,)
    for part in parts:
        e = cache.get(part, enc) if cache is not None else Encoded.of(enc.encode_flows(part))
        flows += e.flows
        keys.update(e.keys)
        tails.update(e.tails)
    return Target(host, b.name, tuple(flows), tuple(canonical_group(g) for g in b.groups), keys, tails, parts)


class Programs:
    """One loaded topology: which datapath is which host's bridge, and what it must hold."""

    def __init__(self, path: str, previous: Programs | None = None) -> None:
        self.topo = load_topology(path)
        # Per host, the numbers its switches carry: the previous load's, updated as hosts compile
        # (the graph reads this dict, so a host is always compiled with its latest memory).
        self.memory: dict[str, Allocation] = {h: a for h, a in (previous.memory if previous else {}).items()
                                              if h in self.topo.hosts}
        self.graph = graph = TopologyGraph(self.topo, memory=self.memory)
        self._compiled: dict[str, Allocation] = {}  # host -> the numbers its targets were compiled with
        self._fingerprints: dict[str, tuple[Any, ...]] = {}
        self.where: dict[int, tuple[str, str]] = {}  # dpid -> (host, role)
        for host in sorted(self.topo.hosts):
            for role, dpid in zip(("int", "tun"), graph.datapath_ids(host)):
                if dpid in self.where:
                    other = self.where[dpid]
                    raise ValueError(f"datapath id {dpid:#x} used by {other[0]}/{other[1]} and {host}/{role}")
                self.where[dpid] = (host, role)
        self._targets: dict[int, Target] = {}
        self.n_flows = 0  # flows of the targets held
        self.encoder = Encoder()
        self.memo: PieceMemo = PieceMemo(previous.memo if previous else None)
        self.encoded: EncodedParts = EncodedParts(previous.encoded if previous else None)

    def label(self, dpid: int) -> str:
        host, role = self.where[dpid]
        return f"{host}/br-{role}"

    def cached(self, dpid: int) -> Target | None:
        return self._targets.get(dpid)

    def fingerprint(self, host: str) -> tuple[Any, ...]:
        if host not in self._fingerprints:
            self._fingerprints[host] = self.graph.fingerprint(host)
        return self._fingerprints[host]

    def hosts_to_warm(self) -> list[str]:
        return [h for h in sorted(self.topo.hosts) if any(
            dpid not in self._targets for dpid in self.graph.datapath_ids(h))]

    def target(self, dpid: int, previous: Programs | None = None) -> Target | None:
        """What switch `dpid` must hold; None if unknown. Compiled on first need, unless
        `previous` had the same inputs for this host: then its targets are reused as they are."""
        if dpid not in self.where:
            return None
        if dpid not in self._targets:
            self.compile(self.where[dpid][0], previous)
        return self._targets[dpid]

    def compile(self, host: str, previous: Programs | None = None) -> None:
        dpids = self.graph.datapath_ids(host)
        if previous is not None and host in previous.topo.hosts \
                and all(d in previous._targets for d in dpids) and host in previous._compiled \
                and previous.fingerprint(host) == self.fingerprint(host):
            self.memo.carry(host)
            self._compiled[host] = previous._compiled[host]
            for d in dpids:
                self._targets[d] = previous._targets[d]
                self.encoded.carry(self._targets[d].parts)
                self.n_flows += len(self._targets[d].flows)
            return
        program = compile_host(self.topo, host, graph=self.graph, memo=self.memo)
        self.memory[host] = self._compiled[host] = program.allocation
        for b in program.bridges:
            self._targets[b.datapath_id] = bridge_target(host, b, self.encoder, self.encoded)
            self.n_flows += len(b.flows)

    def remember_ports(self, dpid: int, ports: Mapping[str, int]) -> bool:
        """A connecting switch's OpenFlow ports (name -> number, from port-desc) as the numbering
        memory of its host: OVS keeps the numbers it was asked for, so after a controller restart
        this is the allocation the flows must use. The switch wins over what this controller
        remembers. Returns True when the host's numbers changed (its targets are then dropped and
        compiled again on next need)."""
        if dpid not in self.where:
            return False
        host, role = self.where[dpid]
        old = self.memory.get(host, Allocation())
        if role == "int":
            by_iface = {p.iface: p.name for p in self.graph.ports_on(host)}
            seen = {by_iface[n]: no for n, no in ports.items() if n in by_iface and no != PATCH_OFPORT}
            new = Allocation(old.vlans, {**old.vm_ofports, **seen}, old.tunnel_ofports)
        else:
            seen = {n: no for n, no in ports.items() if n.split("-", 1)[0] in TUNNEL_TYPES}
            new = Allocation(old.vlans, old.vm_ofports, {**old.tunnel_ofports, **seen})
        if new == old:
            return False
        self.memory[host] = new
        compiled = self._compiled.get(host)
        if compiled is None or self.graph.allocation(host) == compiled:
            return False
        del self._compiled[host]
        for d in self.graph.datapath_ids(host):
            target = self._targets.pop(d, None)
            if target is not None:
                self.n_flows -= len(target.flows)
        return True
