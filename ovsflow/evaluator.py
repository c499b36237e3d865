"""A flow-table evaluator: push frames through compiled OpenFlow tables the way OVS would.

Tests use it to check what a compiled program *does* (which ports a frame leaves on, with which
tunnel key, what learn() remembers) without a switch. It reads `ovsflow.flow.Flow` values directly:
no text parsing, so it tests the compiler's output, not a printer/parser round trip.

Semantics follow OVS (ofproto-dpif-xlate), restricted to what ovsflow emits:
- In a table the matching flow of highest priority wins. Two matching flows of the same priority is
  undefined in OpenFlow; here the first in `Flow.sort_key()` order wins (match text, then actions
  text) and the trace records the tie (`Trace.ambiguities`) so a test can refuse it.
- A table miss with no matching flow drops (OpenFlow 1.3+, and ovsflow bridges are fail_mode secure).
- Actions run in order, then `goto_table`. `output:P` with P equal to the frame's in_port is skipped
  (OpenFlow), only `IN_PORT` sends a frame back where it came from.
- Output to a patch port continues in the peer bridge at table 0 with in_port = the peer port and
  the tunnel metadata cleared (OVS `patch_port_output`); the sender's state is untouched afterwards.
- learn() builds a flow from the current frame; learned flows are installed when the frame's pass
  through the host is over (OVS installs them after translation), replacing a flow with the same
  table, priority and match, as an OpenFlow add does. Hard and idle timeouts run on a clock that
  only moves with `advance()`.
- Groups: `all` applies every bucket to its own copy, `indirect` its one bucket, `select` one bucket
  chosen by a hash of the Ethernet addresses and VLAN (deterministic).
- Flows are checked when added, as `ovs-ofctl -O OpenFlow14` would refuse them: goto_table only
  forward and last, match prerequisites (arp_* need dl_type=0x0806 ...), pop_vlan and
  set_field:vlan_vid only when a VLAN header is known to be present, groups must exist.
Anything outside this model (QinQ, reserved ports such as NORMAL, unknown actions) raises
`EvaluationError` instead of guessing.
"""

from __future__ import annotations

import bisect
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable

from .fields import FIELDS
from .flow import (
    IN_PORT,
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
from .packet import Frame
from .pipeline import openflow_problem
from .program import TUNNEL_TYPES, BridgeProgram, HostProgram, PortConfig

MAX_DEPTH = 64  # OVS's MAX_DEPTH of nested resubmit/goto/patch translation
MAX_RESUBMITS = 4096  # OVS's MAX_RESUBMITS per translation
MAX_TUNNEL_HOPS = 10_000  # a fabric-wide forwarding loop guard

class EvaluationError(Exception):
    """The program does something the evaluator cannot model, or OVS would refuse or loop on."""


# ---------------------------------------------------------------------------------------------
# Results and traces


@dataclass(frozen=True, slots=True)
class Egress:
    """A frame leaving a host on a non-patch port (a VM port, a tunnel, anything else)."""

    host: str
    bridge: str
    port: str
    ofport: int
    type: str  # PortConfig.type: "" for VM ports, "vxlan"/"gre"/"geneve" for tunnels
    frame: Frame  # as on the wire (inner frame for tunnels): metadata cleared
    tun_id: int | None = None  # the tunnel key, for tunnel ports
    remote_ip: str | None = None
    local_ip: str | None = None

    @property
    def is_tunnel(self) -> bool:
        return self.type in TUNNEL_TYPES

    def __str__(self) -> str:
        where = f"{self.host}/{self.bridge}:{self.port}({self.ofport})"
        if self.is_tunnel:
            where += f" {self.type} key={self.tun_id:#x} -> {self.remote_ip}"
        return f"{where}: {self.frame}"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a trace: a table lookup (flow None = miss) or a note (table None)."""

    host: str
    bridge: str
    table: int | None
    flow: Flow | None
    frame: Frame
    depth: int
    note: str = ""
    tied: tuple[Flow, ...] = ()


@dataclass
class Trace:
    """What a frame did, in order, like `ovs-appctl ofproto/trace`: made to go in assert messages."""

    steps: list[Step] = field(default_factory=list)

    def hits(self) -> list[tuple[str, str, int, Flow | None]]:
        return [(s.host, s.bridge, s.table, s.flow) for s in self.steps if s.table is not None]

    def tables(self, host: str | None = None, bridge: str | None = None) -> list[int]:
        return [t for h, b, t, _ in self.hits()
                if (host is None or h == host) and (bridge is None or b == bridge)]

    def notes(self) -> list[str]:
        return [s.note for s in self.steps if s.table is None]

    @property
    def ambiguities(self) -> list[Step]:
        return [s for s in self.steps if s.tied]

    def tail(self, n: int = 40) -> str:
        """The last n steps: enough to see a loop without printing thousands of lines."""
        cut = len(self.steps) - n
        text = str(Trace(self.steps[-n:]))
        return (f"... ({cut} earlier steps)\n" + text) if cut > 0 else text

    def __str__(self) -> str:
        lines = []
        for s in self.steps:
            pad = "  " * s.depth
            if s.table is None:
                lines.append(f"{pad}  -> {s.note}")
                continue
            what = str(s.flow) if s.flow is not None else "no match: drop"
            lines.append(f"{pad}{s.host}/{s.bridge} table {s.table} [{s.frame}]: {what}")
            for t in s.tied:
                lines.append(f"{pad}  !! tie at same priority with: {t}")
        return "\n".join(lines)


@dataclass
class Result:
    """The outcome of one frame injected into one host."""

    outputs: list[Egress]
    trace: Trace
    learned: list[Flow]

    def ports(self) -> list[str]:
        return sorted(e.port for e in self.outputs)


@dataclass
class FabricResult:
    """The outcome of one frame injected into a fabric of hosts, tunnels followed."""

    deliveries: list[Egress]  # frames leaving on non-tunnel ports (VMs), on any host
    tunnel_hops: list[Egress]  # every frame sent into a tunnel
    lost: list[tuple[Egress, str]]  # tunnel frames no remote host accepted, and why
    trace: Trace
    learned: list[tuple[str, Flow]]  # (host, flow)

    def delivered_to(self) -> list[tuple[str, str]]:
        """Sorted (host, port) of every delivery; duplicates kept (a duplicate is a bug)."""
        return sorted((e.host, e.port) for e in self.deliveries)


# ---------------------------------------------------------------------------------------------
# Checking and matching flows


def check_flow(flow: Flow, groups: dict[int, GroupEntry] | None = None) -> None:
    """Refuse what ovs-ofctl -O OpenFlow14 would refuse (pipeline.openflow_problem, the same
    rules the compiler's output is held to); raise EvaluationError."""
    problem = openflow_problem(flow, groups)
    if problem:
        raise EvaluationError(f"{flow}: {problem}")


def matches(flow: Flow, frame: Frame) -> bool:
    for name, want in flow.match:
        have = frame.get(name)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = want
            if have & mask != value & mask:
                return False
        elif have != want:
            return False
    return True


@dataclass
class Entry:
    """A flow installed in a table, with the bookkeeping OVS keeps for it."""

    flow: Flow
    installed: float
    last_hit: float
    n_packets: int = 0

    def expired(self, now: float) -> bool:
        f = self.flow
        return bool((f.hard_timeout and now >= self.installed + f.hard_timeout)
                    or (f.idle_timeout and now >= self.last_hit + f.idle_timeout))


def _entry_key(e: Entry) -> tuple:
    return (-e.flow.priority, e.flow.sort_key())


# ---------------------------------------------------------------------------------------------
# One bridge: tables, groups, ports


class Bridge:
    """The flow tables, groups and ports of one OVS bridge."""

    def __init__(self, name: str, ports: Iterable[PortConfig] = (), flows: Iterable[Flow] = (),
                 groups: Iterable[GroupEntry] = (), host: str = "") -> None:
        self.name = name
        self.host = host
        self.now = 0.0
        self.ports: dict[int, PortConfig] = {}
        self.ports_by_name: dict[str, PortConfig] = {}
        for p in ports:
            if p.ofport in self.ports or p.name in self.ports_by_name:
                raise EvaluationError(f"{host}/{name}: duplicate port {p.name} ({p.ofport})")
            self.ports[p.ofport] = p
            self.ports_by_name[p.name] = p
        self.groups: dict[int, GroupEntry] = {g.group_id: g for g in groups}
        self._tables: dict[int, list[Entry]] = {}
        self._index: dict[tuple, Entry] = {}
        for f in flows:
            self.add_flow(f)

    @classmethod
    def from_program(cls, bp: BridgeProgram, host: str = "") -> "Bridge":
        return cls(bp.name, bp.ports, bp.flows, bp.groups, host=host)

    def add_flow(self, flow: Flow, check: bool = True) -> bool:
        """Install a flow; True when it replaced one with the same table, priority and match."""
        if check:
            check_flow(flow, self.groups)
        key = (flow.table, flow.priority, flow.match)
        table = self._tables.setdefault(flow.table, [])
        old = self._index.pop(key, None)
        if old is not None:
            table.remove(old)
        entry = Entry(flow, self.now, self.now)
        bisect.insort(table, entry, key=_entry_key)
        self._index[key] = entry
        return old is not None

    def remove_flows(self, cookie: int | None = None, table: int | None = None) -> int:
        gone = [e for e in self.entries()
                if (cookie is None or e.flow.cookie == cookie)
                and (table is None or e.flow.table == table)]
        for e in gone:
            self._drop(e)
        return len(gone)

    def _drop(self, e: Entry) -> None:
        self._tables[e.flow.table].remove(e)
        del self._index[(e.flow.table, e.flow.priority, e.flow.match)]

    def entries(self, table: int | None = None) -> list[Entry]:
        if table is not None:
            return list(self._tables.get(table, ()))
        return [e for t in sorted(self._tables) for e in self._tables[t]]

    def flows(self, table: int | None = None, cookie: int | None = None) -> list[Flow]:
        return [e.flow for e in self.entries(table) if cookie is None or e.flow.cookie == cookie]

    def lookup(self, table: int, frame: Frame) -> tuple[Entry | None, tuple[Flow, ...]]:
        """The winning entry (or None) and any other matching flows tied at its priority."""
        best: Entry | None = None
        tied: list[Flow] = []
        for e in self._tables.get(table, ()):
            if best is not None and e.flow.priority < best.flow.priority:
                break
            if matches(e.flow, frame):
                if best is None:
                    best = e
                else:
                    tied.append(e.flow)
        return best, tuple(tied)

    def advance_to(self, now: float) -> list[Flow]:
        """Move this bridge's clock; remove and return the flows whose timeouts expired."""
        self.now = now
        gone = [e for e in self.entries() if e.expired(now)]
        for e in gone:
            self._drop(e)
        return [e.flow for e in gone]

    def dump(self) -> str:
        """Text close to `ovs-ofctl dump-flows`, with packet counts, for assertion messages."""
        return "\n".join(f"n_packets={e.n_packets}, {e.flow}" for e in self.entries())


# ---------------------------------------------------------------------------------------------
# One host: bridges joined by patch ports


@dataclass
class _Xlate:
    """State of one frame's pass through one host (OVS: one translation)."""

    trace: Trace
    outputs: list[Egress] = field(default_factory=list)
    learns: list[tuple[Bridge, Flow]] = field(default_factory=list)
    resubmits: int = 0


class Host:
    """The bridges of one hypervisor, joined by patch ports (`options:peer`)."""

    def __init__(self, program: HostProgram) -> None:
        self.program = program
        self.name = program.host
        self.vtep = program.vtep
        self.now = 0.0
        self.bridges: dict[str, Bridge] = {
            bp.name: Bridge.from_program(bp, host=program.host) for bp in program.bridges
        }
        self._roles = {bp.role: bp.name for bp in program.bridges}
        self._peers: dict[tuple[str, int], tuple[Bridge, PortConfig]] = {}
        for b in self.bridges.values():
            for p in b.ports.values():
                if p.type == "patch":
                    self._peers[(b.name, p.ofport)] = self._find_peer(b, p)

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

    def _note(self, x: _Xlate, b: Bridge, frame: Frame, depth: int, text: str) -> None:
        x.trace.steps.append(Step(self.name, b.name, None, None, frame, depth, text))

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

    def _actions(self, x: _Xlate, b: Bridge, actions: Iterable, frame: Frame,
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
            elif isinstance(a, Load):
                frame = _load(frame, a.dst, a.value, a.n_bits)
            elif isinstance(a, Move):
                frame = frame.set(a.dst, frame.get(a.src) or 0)
            elif isinstance(a, Learn):
                flow = learn_flow(a, frame)
                x.learns.append((b, flow))
                self._note(x, b, frame, depth, f"learn into table {a.table}: {flow}")
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
        self._note(x, b, frame, depth, f"group {group_id} type={g.type}: {len(buckets)} bucket(s)")
        for bucket in buckets:
            _, goto = self._actions(x, b, bucket.actions, frame, depth + 1)
            if goto is not None:
                raise EvaluationError(f"goto_table inside group {group_id}")

    def _output(self, x: _Xlate, b: Bridge, port_no: int, frame: Frame, depth: int) -> None:
        if port_no == IN_PORT:
            port_no = frame.in_port
        elif port_no == frame.in_port:
            self._note(x, b, frame, depth, f"output:{port_no} skipped: it is the in_port")
            return
        port = b.ports.get(port_no)
        if port is None:
            if port_no >= 0xFFFFFF00:
                raise EvaluationError(f"reserved port {port_no:#x} not modelled")
            self._note(x, b, frame, depth, f"output:{port_no}: no such port, dropped")
            return
        if port.type == "patch":
            peer_bridge, peer = self._peers[(b.name, port.ofport)]
            self._note(x, b, frame, depth, f"patch {port.name} -> {peer_bridge.name}:{peer.name}")
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
        self._note(x, b, frame, depth, f"out {egress}")


def _load(frame: Frame, dst: str, value: int, n_bits: int | None) -> Frame:
    if n_bits is None:
        return frame.set(dst, value)
    mask = (1 << n_bits) - 1
    old = frame.get(dst) or 0
    return frame.set(dst, (old & ~mask) | (value & mask))


def learn_flow(spec: Learn, frame: Frame) -> Flow:
    """The flow learn() adds for this frame (OVS `learn_execute`): match specs take the frame's
    current values, load specs become immediate loads, output specs a fixed output port."""
    match: dict = {}
    actions: list = []
    for s in spec.specs:
        if s.kind == "output":
            src_w = FIELDS[s.src].bits  # type: ignore[index]
            n = s.n_bits or src_w
            actions.append(Output((frame.get(s.src) or 0) & ((1 << n) - 1)))  # type: ignore[arg-type]
            continue
        width = FIELDS[s.dst].bits  # type: ignore[index]
        n = s.n_bits or width
        mask = (1 << n) - 1
        if s.kind == "match":
            value = (frame.get(s.src or s.dst) or 0) & mask  # type: ignore[arg-type]
            match[s.dst] = value if n == width else (value, mask)
        elif s.kind == "load":
            value = s.src if isinstance(s.src, int) else (frame.get(s.src) or 0) & mask  # type: ignore[arg-type]
            actions.append(Load(s.dst, value, s.n_bits))  # type: ignore[arg-type]
        else:
            raise EvaluationError(f"learn spec kind {s.kind!r} not modelled")
    try:
        return Flow.make(spec.table, spec.priority, match, actions, cookie=spec.cookie,
                         hard_timeout=spec.hard_timeout, idle_timeout=spec.idle_timeout)
    except KeyError as e:
        raise EvaluationError(f"learn() matches a field Flow cannot express: {e}") from None


# ---------------------------------------------------------------------------------------------
# A fabric: hosts joined by tunnels over an ideal underlay


class Fabric:
    """Several hosts; a frame leaving on a tunnel port enters the host owning its remote_ip, on
    that host's tunnel port of the same type whose remote_ip is the sender (OVS's tunnel port
    lookup by type, addresses and key). No such port: the frame is lost (OVS drops it too)."""

    def __init__(self, programs: Iterable[HostProgram]) -> None:
        self.hosts: dict[str, Host] = {}
        self.by_vtep: dict[str, Host] = {}
        for p in programs:
            h = Host(p)
            self.hosts[h.name] = h
            self.by_vtep[h.vtep] = h

    def advance(self, seconds: float) -> list[tuple[str, Flow]]:
        return [(h.name, f) for h in self.hosts.values() for f in h.advance(seconds)]

    def _ingress(self, e: Egress) -> tuple[Host, Bridge, PortConfig] | str:
        dst = self.by_vtep.get(e.remote_ip or "")
        if dst is None:
            return f"no host has VTEP {e.remote_ip}"
        src_ip = e.local_ip or self.hosts[e.host].vtep
        fallback = None
        for b in dst.bridges.values():
            for p in b.ports.values():
                if p.type != e.type:
                    continue
                o = dict(p.options)
                if o.get("local_ip", dst.vtep) != dst.vtep:
                    continue
                key = o.get("key", "0")
                if key != "flow" and int(key, 0) != e.tun_id:
                    continue
                if o.get("remote_ip") == src_ip:
                    return dst, b, p
                if o.get("remote_ip") == "flow" and fallback is None:
                    fallback = (dst, b, p)
        return fallback or f"{dst.name} has no {e.type} port for remote {src_ip}"

    def inject(self, host: str, port: str, frame: Frame) -> FabricResult:
        """A frame sent by whatever sits on `port` of `host`; follow it through every tunnel."""
        trace = Trace()
        res = FabricResult([], [], [], trace, [])
        h = self.hosts[host]
        b, p = h.find_port(port)
        queue: deque[tuple[Host, str, int, Frame]] = deque([(h, b.name, p.ofport, frame)])
        hops = 0
        while queue:
            h, bridge, ofport, f = queue.popleft()
            r = h.inject_ofport(bridge, ofport, f, trace)
            res.learned += [(h.name, fl) for fl in r.learned]
            for e in r.outputs:
                if not e.is_tunnel:
                    res.deliveries.append(e)
                    continue
                res.tunnel_hops.append(e)
                hops += 1
                if hops > MAX_TUNNEL_HOPS:
                    raise EvaluationError(f"forwarding loop across hosts:\n{trace.tail()}")
                target = self._ingress(e)
                if isinstance(target, str):
                    res.lost.append((e, target))
                    trace.steps.append(Step(e.host, e.bridge, None, None, e.frame, 0,
                                            f"lost in the underlay: {target}"))
                    continue
                th, tb, tp = target
                trace.steps.append(Step(th.name, tb.name, None, None, e.frame, 0,
                                        f"tunnel {e.host}->{th.name} arrives on {tp.name}"))
                queue.append((th, tb.name, tp.ofport, replace(e.frame, tun_id=e.tun_id or 0)))
        return res
