"""Pushing header classes through one host's bridges: tables, actions, groups, patch ports.

A class enters at a port (a VM port of br-int, or every tunnel port of one type of br-tun at once)
and is followed through both bridges until it leaves the host (a VM port, a tunnel port) or is
dropped. In a table it is intersected with each rule in priority order, minus the matches of the
rules above that it overlapped; each non-empty part runs the rule's actions symbolically.

Rules are the program's flows, with flows that differ only in their exact `in_port` merged into
one rule over a port set (so the tunnel ports of one type travel as one class), plus the *may*
rules standing for what learn() can add (`LearnedModel`): a may rule is taken and also skipped,
because the entry may or may not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..evaluator.host import learn_flow
from ..flow import (
    IN_PORT,
    Action,
    DecTtl,
    Flow,
    GotoTable,
    Group,
    GroupEntry,
    Learn,
    Load,
    Move,
    Output,
    PopVlan,
    PushVlan,
    SetField,
)
from ..packet import Frame
from ..program import TUNNEL_TYPES, BridgeProgram, HostProgram, PortConfig
from .space import VLAN_BITS, Cube, Ternary, canonical, full, relevant, ternary, witness

MAX_PATCH_CROSSINGS = 6  # br-int -> br-tun -> br-int -> br-tun is the longest legitimate path (3)
MAX_CLASS_STEPS = 200_000  # per entry: more means an explosion the engine reports, not a proof


@dataclass(frozen=True)
class Rule:
    priority: int
    cube: Cube
    actions: tuple[Action, ...]
    flow: Flow  # the (first) program flow it stands for, for traces
    may: bool = False  # a learned entry that may or may not exist


@dataclass
class HClass:
    """A header class on its way: the cube and exclusions over the current header, the original
    header's constraints for fields written since entry, and what happened on the way."""

    cube: Cube
    excl: tuple[Cube, ...] = ()
    orig: dict[str, Ternary | None] = field(default_factory=dict)  # field -> constraint before its first write
    ttl_dec: int = 0
    patches: int = 0
    learned: bool = False  # took a may rule (a learned entry)
    entry_ports: frozenset[int] | None = None  # the ingress ports at entry, once a patch changed in_port
    path: tuple[tuple[str, int, Flow], ...] = ()

    def fork(self, **kw: object) -> HClass:
        return replace(self, orig=dict(self.orig), **kw)  # type: ignore[arg-type]

    def original(self) -> tuple[Cube, tuple[Cube, ...]]:
        """The entry header's class (over-approximated where a write lost a relation)."""
        f = {k: v for k, v in self.cube.f.items() if k not in self.orig}
        f.update({k: v for k, v in self.orig.items() if v is not None})
        ex = tuple(e for e in self.excl if not (e.f.keys() & self.orig.keys()))
        return Cube(f, self.entry_ports if self.entry_ports is not None else self.cube.ports), ex

    def write(self, name: str, value: Ternary | None) -> None:
        if name not in self.orig:
            self.orig[name] = self.cube.f.get(name)
        f = dict(self.cube.f)
        if value is None:
            f.pop(name, None)
        else:
            f[name] = value
        before = self.cube.f.get(name)
        self.cube = Cube(f, self.cube.ports)
        self.excl = tuple(_project(e, name, before) for e in self.excl if name not in e.f or _holds(e, name, before))


def _holds(e: Cube, name: str, before: Ternary | None) -> bool:
    """Whether every value the field had before the write satisfied e's condition on it."""
    if before is None:
        return False
    v2, m2 = e.f[name]
    return not (m2 & ~before[1]) and not ((before[0] ^ v2) & m2)


def _project(e: Cube, name: str, before: Ternary | None) -> Cube:
    """e without its condition on a field the class satisfied before it was written."""
    if name not in e.f:
        return e
    return Cube({k: v for k, v in e.f.items() if k != name}, e.ports)


@dataclass(frozen=True)
class Exit:
    """A class leaving the host (`port` a VM or tunnel port) or looping."""

    kind: str  # "port" or "loop"
    bridge: str
    port: PortConfig | None
    cls: HClass


class Table:
    """One table's rules in priority order, indexed by the field most of them match exactly."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = sorted(rules, key=lambda r: -r.priority)
        best, count = "", 0
        for key in ("in_port", "vlan_tci", "tun_id"):
            n = sum(1 for r in self.rules if _key_value(r.cube, key) is not None)
            if n > count:
                best, count = key, n
        self.key = best
        self.index: dict[int, list[int]] = {}
        self.rest: list[int] = []
        for i, r in enumerate(self.rules):
            vals = _key_values(r.cube, best) if best else None
            if vals is None:
                self.rest.append(i)
            else:
                for v in vals:
                    self.index.setdefault(v, []).append(i)

    def candidates(self, cube: Cube) -> Iterable[Rule]:
        vals = _key_values(cube, self.key) if self.key else None
        if vals is None:
            return self.rules
        pos: set[int] = set(self.rest)
        for v in vals:
            pos.update(self.index.get(v, ()))
        return [self.rules[i] for i in sorted(pos)]


def _key_value(cube: Cube, key: str) -> int | None:
    if key == "in_port":
        return next(iter(cube.ports)) if cube.ports is not None and len(cube.ports) == 1 else None
    return cube.exact(key)


def _key_values(cube: Cube, key: str) -> frozenset[int] | None:
    if key == "in_port":
        return cube.ports
    v = cube.exact(key)
    return None if v is None else frozenset((v,))


def flow_cube(flow: Flow) -> Cube:
    f: dict[str, Ternary] = {}
    ports = None
    for name, value in flow.match:
        if name == "in_port":
            assert isinstance(value, int)
            ports = frozenset((value,))
            continue
        k, t = ternary(name, value)
        old = f.get(k)
        f[k] = t if old is None else (old[0] | t[0], old[1] | t[1])
    return Cube(f, ports)


def bridge_rules(bp: BridgeProgram) -> dict[int, list[Rule]]:
    """Flows as rules; flows equal but for an exact in_port become one rule over the port set."""
    merged: dict[tuple[object, ...], tuple[Rule, set[int]]] = {}
    out: dict[int, list[Rule]] = {}
    for fl in bp.flows:
        c = flow_cube(fl)
        if c.ports is not None:
            key = (fl.table, fl.priority, fl.actions, tuple(sorted(c.f.items())))
            found = merged.get(key)
            if found is not None:
                found[1].update(c.ports)
                continue
            merged[key] = (Rule(fl.priority, c, fl.actions, fl), set(c.ports))
            continue
        out.setdefault(fl.table, []).append(Rule(fl.priority, c, fl.actions, fl))
    for rule, ports in merged.values():
        out.setdefault(rule.flow.table, []).append(replace(rule, cube=Cube(rule.cube.f, frozenset(ports))))
    return out


def learned_rule(spec: Learn, vlan: int | None, key: int | None, port: int) -> Rule:
    """What learn() adds for a frame on `port` with this VLAN and key, from any source MAC."""
    frame = Frame(0, 0, vlan=vlan if vlan is not None else 0, tun_id=key or 0, in_port=port)
    fl = learn_flow(spec, frame)
    c = flow_cube(fl)
    keep = {"vlan_tci"} if vlan is not None else set()
    cube = Cube({k: v for k, v in c.f.items() if k in keep}, None)
    actions = fl.actions
    if key is None:  # the key it loads is unknown: say so by loading nothing
        actions = tuple(a for a in actions if not (isinstance(a, Load) and canonical(a.dst) == "tun_id"))
    return Rule(spec.priority, cube, actions, fl, may=True)


class HostExplorer:
    """Follows classes through one host's program; exits and learn() sightings go to callbacks."""

    def __init__(self, program: HostProgram, on_exit: Callable[[Exit], None]) -> None:
        self.program = program
        self.on_exit = on_exit
        self.bridges = {b.name: b for b in program.bridges}
        self.ports = {b.name: {p.ofport: p for p in b.ports} for b in program.bridges}
        self.peers: dict[tuple[str, int], tuple[str, int]] = {}
        for b in program.bridges:
            for p in b.ports:
                if p.type == "patch":
                    peer = dict(p.options).get("peer")
                    for b2 in program.bridges:
                        for q in b2.ports:
                            if b2 is not b and q.name == peer:
                                self.peers[(b.name, p.ofport)] = (b2.name, q.ofport)
        self.groups: dict[str, dict[int, GroupEntry]] = {b.name: {g.group_id: g for g in b.groups} for b in program.bridges}
        self.rules = {b.name: bridge_rules(b) for b in program.bridges}
        self.tables: dict[tuple[str, int], Table] = {}
        self.learns: dict[tuple[str, Learn, int | None, int | None], frozenset[int]] = {}
        self.may: dict[tuple[str, int], list[Rule]] = {}
        self.seen_learns: dict[tuple[str, Learn, int | None, int | None], set[int]] = {}
        self.steps = 0
        self.entry_steps = 0

    # -- entries -----------------------------------------------------------------------------------
    def entries(self) -> list[tuple[str, Cube]]:
        """Tunnel ports first (one class per type: untagged inner frames, any key), then VM ports."""
        out: list[tuple[str, Cube]] = []
        vms: list[tuple[str, Cube]] = []
        for b in self.program.bridges:
            by_type: dict[str, set[int]] = {}
            for p in b.ports:
                if p.type in TUNNEL_TYPES:
                    by_type.setdefault(p.type, set()).add(p.ofport)
                elif p.type == "":
                    vms.append((b.name, Cube({}, frozenset((p.ofport,)))))
            for _, ports in sorted(by_type.items()):
                out.append((b.name, Cube({"vlan_tci": (0, VLAN_BITS)}, frozenset(ports))))
        return out + vms

    def set_learned(self, learns: dict[tuple[str, Learn, int | None, int | None], frozenset[int]]) -> None:
        self.learns = dict(learns)
        self.may = {}
        for (bridge, spec, vlan, key), ports in sorted(learns.items(), key=lambda kv: repr(kv[0])):
            for port in sorted(ports):
                self.may.setdefault((bridge, spec.table), []).append(learned_rule(spec, vlan, key, port))
        self.tables = {}

    def table(self, bridge: str, table: int) -> Table:
        t = self.tables.get((bridge, table))
        if t is None:
            t = self.tables[(bridge, table)] = Table(self.rules[bridge].get(table, []) + self.may.get((bridge, table), []))
        return t

    def run(self, bridge: str, cube: Cube) -> None:
        self.entry_steps = 0
        self._table(HClass(cube), bridge, 0)

    # -- translation -------------------------------------------------------------------------------
    def _table(self, cls: HClass, bridge: str, table: int) -> None:
        self.steps += 1
        self.entry_steps += 1
        if self.entry_steps > MAX_CLASS_STEPS:
            raise RuntimeError(f"{self.program.host}: more than {MAX_CLASS_STEPS} classes from one entry")
        higher: list[Cube] = []
        for r in self.table(bridge, table).candidates(cls.cube):
            i = cls.cube.intersect(r.cube)
            if i is None:
                continue
            ex = relevant(i, (*higher, *cls.excl))
            if any(i.within(e) for e in ex) or (ex and witness(i, ex) is None):
                continue
            new = cls.fork(cube=i, excl=ex, path=(*cls.path, (bridge, table, r.flow)), learned=cls.learned or r.may)
            self._actions(new, bridge, r.actions, goto_ok=True)
            if not r.may:
                higher.append(r.cube)
                if cls.cube.within(r.cube):
                    break

    def _actions(self, cls: HClass, bridge: str, actions: Iterable[Action], goto_ok: bool) -> None:
        goto = None
        for a in actions:
            if isinstance(a, Output):
                self._output(cls, bridge, a.port)
            elif isinstance(a, GotoTable):
                goto = a.table
            elif isinstance(a, SetField):
                c = canonical(a.field)
                cls.write(c, (a.value & 0xFFF | 0x1000, VLAN_BITS) if c == "vlan_tci" else (a.value & full(c), full(c)))
            elif isinstance(a, PushVlan):
                cls.write("vlan_tci", (0x1000, VLAN_BITS))
            elif isinstance(a, PopVlan):
                cls.write("vlan_tci", (0, VLAN_BITS))
            elif isinstance(a, DecTtl):
                ttl = cls.cube.exact("nw_ttl")
                if ttl is not None and ttl <= 1:
                    return
                cls.write("nw_ttl", None if ttl is None else (ttl - 1, 0xFF))
                cls.ttl_dec += 1
            elif isinstance(a, Move):
                cls.write(canonical(a.dst), cls.cube.f.get(canonical(a.src)))
            elif isinstance(a, Load):
                c = canonical(a.dst)
                if a.n_bits is None:
                    cls.write(c, (a.value & full(c), full(c)))
                else:
                    m = (1 << a.n_bits) - 1
                    v0, m0 = cls.cube.f.get(c, (0, 0))
                    cls.write(c, ((v0 & ~m) | (a.value & m), m0 | m))
            elif isinstance(a, Learn):
                self._learn(cls, bridge, a)
            elif isinstance(a, Group):
                g = self.groups[bridge].get(a.group_id)
                for bucket in g.buckets if g is not None else ():
                    self._actions(cls.fork(), bridge, bucket.actions, goto_ok=False)
        if goto is not None and goto_ok:
            self._table(cls, bridge, goto)

    def _learn(self, cls: HClass, bridge: str, spec: Learn) -> None:
        vlan = cls.cube.exact("vlan_tci")
        key = (bridge, spec, None if vlan is None else vlan & 0xFFF, cls.cube.exact("tun_id"))
        ports = cls.cube.ports or frozenset()
        self.seen_learns.setdefault(key, set()).update(ports)

    def _output(self, cls: HClass, bridge: str, port_no: int) -> None:
        ports = cls.cube.ports
        if port_no == IN_PORT:
            for p in sorted(ports or ()):
                self._send(cls.fork(cube=Cube(cls.cube.f, frozenset((p,)))), bridge, p)
            return
        if ports is not None and port_no in ports:
            rest = ports - {port_no}
            if not rest:
                return
            cls = cls.fork(cube=Cube(cls.cube.f, rest))
        self._send(cls.fork(), bridge, port_no)

    def _send(self, cls: HClass, bridge: str, port_no: int) -> None:
        port = self.ports[bridge].get(port_no)
        if port is None:
            return
        if port.type == "patch":
            peer = self.peers.get((bridge, port_no))
            if peer is None:
                return
            cls.patches += 1
            if cls.patches > MAX_PATCH_CROSSINGS:
                self.on_exit(Exit("loop", bridge, port, cls))
                return
            cls.write("tun_id", (0, full("tun_id")))
            if cls.entry_ports is None:
                cls.entry_ports = cls.cube.ports
            cls.cube = Cube(cls.cube.f, frozenset((peer[1],)))
            cls.excl = tuple(e for e in cls.excl if e.ports is None)
            self._table(cls, peer[0], 0)
            return
        self.on_exit(Exit("port", bridge, port, cls))
