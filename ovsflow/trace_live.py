"""`ovsflow trace --live`: every hop of the evaluator's path asked again of the real switch with
`ovs-appctl ofproto/trace`, side by side, disagreements flagged.

A hop is one frame entering one host (the sender's br-int, then each tunnel arrival on a br-tun);
OVS follows patch ports itself, so one ofproto/trace covers both bridges of a host. Per hop the two
must agree on the (bridge, table, priority) of every lookup and on every output: (bridge, port,
tunnel key). A hop's frame is the one the evaluator says enters that host: when the outputs agree,
that is also the frame OVS sends there. `--learned` warm-up frames are traced with `-generate`,
which runs learn() in the switch too. The text parsing lives here once (the tests use it).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .evaluator import Step
from .fields import FIELDS, format_value
from .packet import Frame
from .program import HostProgram
from .trace import Tracer, TraceResult

Appctl = Callable[..., str]
Hit = tuple[str, int, "int | None"]  # (bridge, table, priority; None = no match)
Out = tuple[str, int, "int | None"]  # (bridge, ofport, tunnel key or None)

# ofproto/trace's flow syntax takes ovs-fields(7) names; these are not in a frame's flow or are
# derived from others (the VLAN views, written once as vlan_tci).
_SKIP = {"in_port", "tun_id", "dl_vlan", "vlan_tci", "vlan_vid", "nd_reserved", "nd_options_type"}


def flow_spec(frame: Frame, in_port: int) -> str:
    """The frame as `ovs-appctl ofproto/trace` takes it, every field the frame carries."""
    parts = [f"in_port={in_port}"]
    if frame.tun_id:
        parts.append(f"tun_id={frame.tun_id:#x}")
    if frame.vlan is not None:
        parts.append(f"vlan_tci={0x1000 | frame.vlan:#06x}")
    for name, f in FIELDS.items():
        if name in _SKIP or f.frame is None:
            continue
        value = getattr(frame, f.frame)
        if value is not None:
            parts.append(f"{name}={format_value(f.kind, value)}")
    return ",".join(parts)


HEADER = re.compile(r'^(\s*)bridge\("([^"]+)"\)')
TABLE = re.compile(r"^(\s*)(\d+)\. (.*)$")
OUTPUT = re.compile(r"^(\s*)(?:output:(\d+)|(IN_PORT))$")
SET_KEY = re.compile(r"^(\s*)(?:set_field:(0x[0-9a-f]+|\d+)->tun_id|load:(0x[0-9a-f]+|\d+)->NXM_NX_TUN_ID\[\])$")


def parse_ofproto_trace(text: str, patch_ports: dict[str, set[int]], tunnel_ports: dict[str, set[int]],
                        in_port: int, tun_id: int = 0) -> tuple[list[Hit], list[Out]]:
    """(bridge, table, priority) per lookup and (bridge, port, key) per real output, in order.

    How OVS prints it: a bridge's table numbers end at one column (its level), its actions four
    further in. A bridge entered through a patch port is printed below the output, deeper, when
    more actions follow, or at the same level, replacing the current bridge, when the output was
    the last action. An output to a native tunnel may be followed by the underlay bridge (br-phy,
    not the program's): skipped. Changes made in a deeper block (a patched bridge, a group bucket)
    end with it, so a tunnel output's key is the last tun_id set at its indent or shallower; a
    patch port clears it."""
    stack: list[list[Any]] = []  # [level (None until its first table line), bridge, its in_port]
    keys: list[tuple[int, int]] = [(-1, tun_id)]
    hits: list[Hit] = []
    outs: list[Out] = []
    skip_from: int | None = None  # inside an underlay bridge's block, printed at this indent
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("Final flow", "Datapath actions", "Megaflow")):
            break
        body = line.strip()
        if not body or body.startswith("-"):
            continue
        indent = len(line) - len(body)
        if skip_from is not None:
            if indent >= skip_from:
                continue
            skip_from = None
        while len(keys) > 1 and keys[-1][0] > indent:
            keys.pop()
        table = TABLE.match(line)
        level = line.index(".") - 2 if table else indent
        while len(stack) > 1 and stack[-1][0] is not None and stack[-1][0] > level:
            stack.pop()
        if m := HEADER.match(line):
            bridge = m.group(2)
            if bridge not in patch_ports:
                skip_from = indent
            elif not stack:
                stack.append([None, bridge, in_port])
            elif stack[-1][0] == indent:  # a tail call: this level now runs the peer bridge
                stack[-1] = [indent, bridge, min(patch_ports[bridge] or {0})]
                keys.append((indent, 0))
            else:
                stack.append([None, bridge, min(patch_ports[bridge] or {0})])
                keys.append((indent + 1, 0))
            continue
        if not stack:
            continue
        if stack[-1][0] is None and table:
            stack[-1][0] = level
        bridge, bridge_in = stack[-1][1], stack[-1][2]
        if table:
            rest = table.group(3)
            prio = re.search(r"priority (\d+)", rest)
            hits.append((bridge, int(table.group(2)), None if rest.startswith("No match") or not prio else int(prio.group(1))))
        elif m := SET_KEY.match(line):
            keys.append((indent, int(m.group(2) or m.group(3), 0)))
        elif m := OUTPUT.match(line):
            port = bridge_in if m.group(3) else int(m.group(2))
            skipped = i + 1 < len(lines) and "skipping output to input port" in lines[i + 1]
            if not skipped and port not in patch_ports.get(bridge, set()):
                outs.append((bridge, port, keys[-1][1] if port in tunnel_ports.get(bridge, set()) else None))
    return hits, outs


@dataclass
class Hop:
    """One frame entering one host, as the evaluator took it, and what OVS says."""

    host: str
    bridge: str
    in_port: int
    frame: Frame
    warmup: bool
    mine: tuple[list[Hit], list[Out]]
    theirs: tuple[list[Hit], list[Out]] | None = None
    ovs_text: str = ""
    why: str = ""  # why it was not asked (no switch for that host)

    @property
    def agree(self) -> bool:
        return self.theirs is None or self.mine == self.theirs

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "bridge": self.bridge, "in_port": self.in_port, "warmup": self.warmup,
                "evaluator": {"lookups": self.mine[0], "outputs": self.mine[1]},
                "ovs": None if self.theirs is None else {"lookups": self.theirs[0], "outputs": self.theirs[1]},
                "agree": self.agree if self.theirs is not None else None, "not_asked": self.why or None}


@dataclass
class LiveReport:
    hops: list[Hop] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(h.agree for h in self.hops)

    def to_json(self) -> dict[str, Any]:
        return {"agree": self.agree, "hops": [h.to_json() for h in self.hops]}


def hops(steps: list[Step], warmup: bool = False) -> list[Hop]:
    """The evaluator's steps cut at every tunnel arrival: one Hop per host entered."""
    out: list[Hop] = []
    cur: Hop | None = None
    for s in steps:
        if s.kind == "tunnel":
            cur = None
        elif s.table is not None:
            if cur is None:
                cur = Hop(s.host, s.bridge, s.frame.in_port, s.frame, warmup, ([], []))
                out.append(cur)
            cur.mine[0].append((s.bridge, s.table, s.flow.priority if s.flow else None))
        elif s.kind == "output" and s.egress is not None and cur is not None:
            e = s.egress
            cur.mine[1].append((e.bridge, e.ofport, e.tun_id if e.is_tunnel else None))
    return out


def ask(hop: Hop, program: HostProgram, appctl: Appctl, generate: bool) -> None:
    patch = {b.name: {p.ofport for p in b.ports if p.type == "patch"} for b in program.bridges}
    tunnels = {b.name: {p.ofport for p in b.ports if p.type in ("vxlan", "gre", "geneve")} for b in program.bridges}
    args = ["ofproto/trace", hop.bridge, flow_spec(hop.frame, hop.in_port)] + (["-generate"] if generate else [])
    hop.ovs_text = appctl(*args)
    hop.theirs = parse_ofproto_trace(hop.ovs_text, patch, tunnels, hop.in_port, hop.frame.tun_id)


def lab_switches(name: str) -> dict[str, Appctl]:
    from .lab import lab as labmod

    state = labmod.load_state(name)
    if state is None:
        raise RuntimeError(f"no lab named {name}")
    return {h: labmod.host_ovs(state, h).appctl for h in state.hosts}


def local_switches(topo_vteps: dict[str, str]) -> dict[str, Appctl]:
    """The local OVS (OVS_RUNDIR), as the host whose VTEP its tunnel ports use as local_ip."""
    def appctl(*args: str) -> str:
        return subprocess.run(["ovs-appctl", "-T", "10", *args], capture_output=True, text=True, check=True,
                              env=os.environ.copy()).stdout

    out = subprocess.run(["ovs-vsctl", "--timeout=10", "--bare", "--columns=options", "list", "Interface"],
                         capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"ovs-vsctl: {out.stderr.strip() or 'failed'}")
    mine = {h for ip in re.findall(r'local_ip="?([0-9.]+)', out.stdout) if (h := topo_vteps.get(ip))}
    if len(mine) != 1:
        raise RuntimeError("cannot tell which host this OVS is (its tunnel ports' local_ip): use --lab NAME")
    return {mine.pop(): appctl}


def compare_live(tracer: Tracer, req: object, result: TraceResult, lab: str | None,
                 switches: dict[str, Appctl] | None = None) -> LiveReport:
    """Ask the switches about every hop of `result` (warm-ups first, with -generate)."""
    if switches is None:
        switches = lab_switches(lab) if lab else local_switches({h.vtep: h.name for h in tracer.topo.hosts.values()})
    report = LiveReport()
    for steps in result.warmups:
        report.hops += hops(steps, warmup=True)
    report.hops += hops(result.steps)
    for hop in report.hops:
        appctl = switches.get(hop.host)
        if appctl is None:
            hop.why = f"no switch for {hop.host}"
            continue
        ask(hop, tracer.program(hop.host), appctl, hop.warmup)
    return report


def _outs(outs: list[Out]) -> str:
    return ", ".join(f"{b}:{p}" + (f" key={k:#x}" if k is not None else "") for b, p, k in outs) or "drop"


def live_text(report: LiveReport) -> str:
    lines = ["live (ovs-appctl ofproto/trace, per hop):"]
    for h in report.hops:
        what = f"  {'warm-up ' if h.warmup else ''}{h.host} {h.bridge} in_port={h.in_port}"
        if h.theirs is None:
            lines.append(f"{what}: not asked ({h.why})")
            continue
        mark = "agree" if h.agree else "DISAGREE"
        lines.append(f"{what}: {mark}; evaluator -> {_outs(h.mine[1])}; ovs -> {_outs(h.theirs[1])}")
        if not h.agree:
            lines.append(f"    evaluator lookups: {h.mine[0]}")
            lines.append(f"    ovs lookups:       {h.theirs[0]}")
    lines.append("live: " + ("the switches agree with the evaluator" if report.agree else "DISAGREEMENT (exit 1)"))
    return "\n".join(lines) + "\n"
