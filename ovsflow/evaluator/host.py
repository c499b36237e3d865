"""One host: its bridges joined by patch ports, and the translation of a frame through them (tables,
actions, groups, outputs, learn()), following OVS's ofproto-dpif-xlate as far as ovsflow needs."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..fields import FIELDS
from ..flow import (
    IN_PORT,
    Action,
    DecTtl,
    Flow,
    GotoTable,
    Group,
    Learn,
    Load,
    MatchValue,
    Move,
    Output,
    PopVlan,
    PushVlan,
    SetField,
)
from ..packet import Frame
from ..program import TUNNEL_TYPES, HostProgram, PortConfig
from .results import Egress, EvaluationError, Result, Step, Trace
from .tables import Bridge

MAX_DEPTH = 64  # OVS's MAX_DEPTH of nested resubmit/goto/patch translation
MAX_RESUBMITS = 4096  # OVS's MAX_RESUBMITS per translation


@dataclass
class _Xlate:
    """State of one frame's pass through one host (OVS: one translation)."""

    trace: Trace
    outputs: list[Egress] = field(default_factory=list)
    learns: list[tuple[Bridge, Flow]] = field(default_factory=list)
    resubmits: int = 0


class Host:
    """The bridges of one hypervisor, joined by patch ports (`options:peer`)."""

    def __init__(self, program: HostProgram, check: bool = True) -> None:
        """`check=False`: the program's flows are trusted, not checked again (trace.py: the
        compiler checked them, and a trace should not pay for it per frame)."""
        self.program = program
        self.name = program.host
        self.vtep = program.vtep
        self.now = 0.0
        self.bridges: dict[str, Bridge] = {
            bp.name: Bridge.from_program(bp, host=program.host, check=check) for bp in program.bridges
        }
        self._roles = {bp.role: bp.name for bp in program.bridges}
        self._peers: dict[tuple[str, int], tuple[Bridge, PortConfig]] = {}
        for b in self.bridges.values():
            for p in b.ports.values():
                if p.type == "patch":
                    self._peers[(b.name, p.ofport)] = self._find_peer(b, p)

    def fork(self) -> Host:
        """A copy to push frames through without changing this host's tables (Bridge.fork)."""
        twin = object.__new__(Host)
        twin.__dict__.update(self.__dict__)
        twin.bridges = {name: b.fork() for name, b in self.bridges.items()}
        twin._peers = {key: (twin.bridges[b.name], port) for key, (b, port) in self._peers.items()}
        return twin

    def _find_peer(self, bridge: Bridge, port: PortConfig) -> tuple[Bridge, PortConfig]:
        peer = dict(port.options).get("peer")
        for b in self.bridges.values():
            if b is not bridge and peer in b.ports_by_name:
                return b, b.ports_by_name[peer]
        raise EvaluationError(f"{self.name}/{bridge.name}: patch port {port.name} has no peer {peer!r}")

    def bridge(self, name_or_role: str) -> Bridge:
        """A bridge by name (`br-int`) or pipeline role (`int`, `tun`)."""
        return self.bridges[self._roles.get(name_or_role, name_or_role)]

    def find_port(self, name: str) -> tuple[Bridge, PortConfig]:
        for b in self.bridges.values():
            if name in b.ports_by_name:
                return b, b.ports_by_name[name]
        raise KeyError(f"{self.name}: no port named {name!r}")

    def inject(self, port: str, frame: Frame, trace: Trace | None = None) -> Result:
        """A frame arriving on a port (by name); what leaves this host's non-patch ports."""
        b, p = self.find_port(port)
        return self.inject_ofport(b.name, p.ofport, frame, trace)

    def inject_ofport(self, bridge: str, ofport: int, frame: Frame,
                      trace: Trace | None = None) -> Result:
        """A frame arriving on any OpenFlow port number, even one the bridge does not have
        (to test that the pipeline drops frames from unexpected ports). `frame.tun_id` is kept:
        set it for frames arriving from a tunnel."""
        x = _Xlate(trace if trace is not None else Trace())
        b = self.bridges[bridge]
        self._table(x, b, 0, replace(frame, in_port=ofport), 0)
        learned = []
        for lb, flow in x.learns:
            lb.add_flow(flow, check=False)
            learned.append(flow)
        return Result(x.outputs, x.trace, learned)

    def advance(self, seconds: float) -> list[Flow]:
        """Let time pass: flows whose hard/idle timeout ran out are removed (and returned)."""
        self.now += seconds
        gone: list[Flow] = []
        for b in self.bridges.values():
            gone += b.advance_to(self.now)
        return gone

    # -- translation ---------------------------------------------------------------------------

    def _note(self, x: _Xlate, b: Bridge, frame: Frame, depth: int, text: str, kind: str = "",
              egress: Egress | None = None) -> None:
        x.trace.steps.append(Step(self.name, b.name, None, None, frame, depth, text, kind=kind, egress=egress))

    def _table(self, x: _Xlate, b: Bridge, table: int, frame: Frame, depth: int) -> None:
        x.resubmits += 1
        if depth > MAX_DEPTH or x.resubmits > MAX_RESUBMITS:
            raise EvaluationError(f"translation too deep (loop?) at {self.name}/{b.name} "
                                  f"table {table}:\n{x.trace.tail()}")
        entry, tied = b.lookup(table, frame)
        x.trace.steps.append(Step(self.name, b.name, table, entry.flow if entry else None,
                                  frame, depth, tied=tied))
        if entry is None:
            return
        entry.n_packets += 1
        entry.last_hit = b.now
        frame, goto = self._actions(x, b, entry.flow.actions, frame, depth)
        if goto is not None:
            self._table(x, b, goto, frame, depth + 1)

    def _actions(self, x: _Xlate, b: Bridge, actions: Iterable[Action], frame: Frame,
                 depth: int) -> tuple[Frame, int | None]:
        goto = None
        for a in actions:
            if isinstance(a, Output):
                self._output(x, b, a.port, frame, depth)
            elif isinstance(a, GotoTable):
                goto = a.table
            elif isinstance(a, SetField):
                if a.field == "vlan_vid" and frame.vlan is None:
                    raise EvaluationError(f"set_field vlan_vid on an untagged frame:\n{x.trace.tail()}")
                frame = frame.set(a.field, a.value)
            elif isinstance(a, PushVlan):
                if frame.vlan is not None:
                    raise EvaluationError(f"push_vlan on a tagged frame (QinQ not modelled):\n{x.trace.tail()}")
                frame = replace(frame, vlan=0)
            elif isinstance(a, PopVlan):
                if frame.vlan is None:
                    raise EvaluationError(f"pop_vlan on an untagged frame:\n{x.trace.tail()}")
                frame = replace(frame, vlan=None)
            elif isinstance(a, DecTtl):
                if frame.nw_ttl is None:
                    raise EvaluationError(f"dec_ttl on a frame without IP:\n{x.trace.tail()}")
                if frame.nw_ttl <= 1:  # OVS: no decrement, the rest of the actions does not run
                    self._note(x, b, frame, depth, f"dec_ttl: TTL {frame.nw_ttl} expired, dropped", "ttl")
                    return frame, None
                frame = replace(frame, nw_ttl=frame.nw_ttl - 1)
            elif isinstance(a, Load):
                frame = _load(frame, a.dst, a.value, a.n_bits)
            elif isinstance(a, Move):
                frame = frame.set(a.dst, frame.get(a.src) or 0)
            elif isinstance(a, Learn):
                flow = learn_flow(a, frame)
                x.learns.append((b, flow))
                self._note(x, b, frame, depth, f"learn into table {a.table}: {flow}", "learn")
            elif isinstance(a, Group):
                self._group(x, b, a.group_id, frame, depth)
            else:
                raise EvaluationError(f"action not modelled: {a!r}")
        return frame, goto

    def _group(self, x: _Xlate, b: Bridge, group_id: int, frame: Frame, depth: int) -> None:
        g = b.groups.get(group_id)
        if g is None:
            raise EvaluationError(f"{self.name}/{b.name}: group {group_id} does not exist")
        if g.type == "all":
            buckets = g.buckets
        elif g.type == "indirect":
            buckets = g.buckets[:1]
        elif g.type == "select":
            h = zlib.crc32(f"{frame.eth_src}/{frame.eth_dst}/{frame.vlan}".encode())
            buckets = (g.buckets[h % len(g.buckets)],) if g.buckets else ()
        else:
            raise EvaluationError(f"group type {g.type!r} not modelled")
        self._note(x, b, frame, depth, f"group {group_id} type={g.type}: {len(buckets)} bucket(s)", "group")
        for bucket in buckets:
            _, goto = self._actions(x, b, bucket.actions, frame, depth + 1)
            if goto is not None:
                raise EvaluationError(f"goto_table inside group {group_id}")

    def _output(self, x: _Xlate, b: Bridge, port_no: int, frame: Frame, depth: int) -> None:
        if port_no == IN_PORT:
            port_no = frame.in_port
        elif port_no == frame.in_port:
            self._note(x, b, frame, depth, f"output:{port_no} skipped: it is the in_port", "in_port")
            return
        port = b.ports.get(port_no)
        if port is None:
            if port_no >= 0xFFFFFF00:
                raise EvaluationError(f"reserved port {port_no:#x} not modelled")
            self._note(x, b, frame, depth, f"output:{port_no}: no such port, dropped", "no_port")
            return
        if port.type == "patch":
            peer_bridge, peer = self._peers[(b.name, port.ofport)]
            self._note(x, b, frame, depth, f"patch {port.name} -> {peer_bridge.name}:{peer.name}", "patch")
            entering = replace(frame, in_port=peer.ofport, tun_id=0)
            self._table(x, peer_bridge, 0, entering, depth + 1)
            return
        opts = dict(port.options)
        egress = Egress(self.name, b.name, port.name, port.ofport, port.type, frame.wire())
        if port.type in TUNNEL_TYPES:
            key = opts.get("key", "0")
            tun_id = frame.tun_id if key == "flow" else int(key, 0)
            egress = replace(egress, tun_id=tun_id, remote_ip=opts.get("remote_ip"),
                             local_ip=opts.get("local_ip"))
        x.outputs.append(egress)
        self._note(x, b, frame, depth, f"out {egress}", "output", egress)


def _load(frame: Frame, dst: str, value: int, n_bits: int | None) -> Frame:
    if n_bits is None:
        return frame.set(dst, value)
    mask = (1 << n_bits) - 1
    old = frame.get(dst) or 0
    return frame.set(dst, (old & ~mask) | (value & mask))


def learn_flow(spec: Learn, frame: Frame) -> Flow:
    """The flow learn() adds for this frame (OVS `learn_execute`): match specs take the frame's
    current values, load specs become immediate loads, output specs a fixed output port."""
    match: dict[str, MatchValue] = {}
    actions: list[Action] = []
    for s in spec.specs:
        if s.kind == "output" and isinstance(s.src, str):
            n = s.n_bits or FIELDS[s.src].bits
            actions.append(Output((frame.get(s.src) or 0) & ((1 << n) - 1)))
            continue
        if s.dst is None:
            raise EvaluationError(f"learn spec without a destination field: {s}")
        width = FIELDS[s.dst].bits
        n = s.n_bits or width
        mask = (1 << n) - 1
        if s.kind == "match" and not isinstance(s.src, int):
            value = (frame.get(s.src or s.dst) or 0) & mask
            match[s.dst] = value if n == width else (value, mask)
        elif s.kind == "load":
            value = s.src if isinstance(s.src, int) else (frame.get(s.src or s.dst) or 0) & mask
            actions.append(Load(s.dst, value, s.n_bits))
        else:
            raise EvaluationError(f"learn spec not modelled: {s}")
    try:
        return Flow.make(spec.table, spec.priority, match, actions, cookie=spec.cookie,
                         hard_timeout=spec.hard_timeout, idle_timeout=spec.idle_timeout)
    except KeyError as e:
        raise EvaluationError(f"learn() matches a field Flow cannot express: {e}") from None
