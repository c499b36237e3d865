"""A `TraceResult` as text for people and as JSON for tools (`ovsflow trace --json`).

The JSON is a stable, documented structure (`FORMAT` names its version; fields are only added):

    {"format": "ovsflow-trace/1",
     "source": {"port", "host", "iface"}, "frame": "<text>", "notes": ["..."],
     "steps": [  # in the order OVS would take them
        {"kind": "table", "host", "bridge", "role", "table", "table_name", "flow", "actions",
         "priority", "cookie", "depth", "frame"},         # flow null: no flow matched
        {"kind": "patch"|"group"|"learn"|"output"|"ttl"|"in_port"|"no_port", "host", "bridge",
         "text", "depth"},
        {"kind": "tunnel"|"lost", ...leg}],
     "tunnels": [{"from_host", "to_host" (null when lost), "type", "key", "src_vtep", "dst_vtep",
                  "out_port", "in_port", "lost" (why, or null)}],
     "delivered": [{"host", "port", "iface"}],
     "dropped": [{"host", "bridge", "table", "table_name", "flow", "reason"}],
     "learned": N, "hosts_compiled": [...]}

`flow` is the flow as `ovs-ofctl dump-flows` prints it, cookie included (no counters).
"""

from __future__ import annotations

from typing import Any

from .evaluator import Step
from .trace import TraceResult

FORMAT = "ovsflow-trace/1"


def leg(s: Step, steps: list[Step] | None = None) -> dict[str, Any]:
    e = s.egress
    assert e is not None
    lost = s.kind == "lost"
    arrives = s.note.rsplit(" arrives on ", 1)[1] if not lost and " arrives on " in s.note else None
    return {"from_host": e.host, "to_host": None if lost else s.host, "type": e.type, "key": e.tun_id,
            "src_vtep": e.local_ip, "dst_vtep": e.remote_ip, "out_port": e.port, "in_port": arrives,
            "lost": s.note.split(": ", 1)[-1] if lost else None}


def step_dict(r: TraceResult, s: Step) -> dict[str, Any]:
    if s.table is not None:
        return {"kind": "table", "host": s.host, "bridge": s.bridge, "role": r.roles.get((s.host, s.bridge)),
                "table": s.table, "table_name": r.table_name(s.host, s.bridge, s.table),
                "flow": str(s.flow) if s.flow else None, "actions": s.flow.actions_text() if s.flow else None,
                "priority": s.flow.priority if s.flow else None, "cookie": f"{s.flow.cookie:#x}" if s.flow else None,
                "depth": s.depth, "frame": str(s.frame)}
    if s.kind in ("tunnel", "lost"):
        return {"kind": s.kind, **leg(s)}
    return {"kind": s.kind or "note", "host": s.host, "bridge": s.bridge, "text": s.note, "depth": s.depth}


def to_json(r: TraceResult) -> dict[str, Any]:
    p = r.probe
    return {
        "format": FORMAT,
        "source": {"port": p.port.name, "host": p.port.host, "iface": p.port.iface},
        "frame": str(p.frame),
        "notes": list(p.notes),
        "steps": [step_dict(r, s) for s in r.steps],
        "tunnels": [leg(s) for s in r.legs],
        "delivered": [{"host": h, "port": n or None, "iface": i} for h, n, i in r.delivered],
        "dropped": [{"host": s.host, "bridge": s.bridge, "table": s.table,
                     "table_name": r.table_name(s.host, s.bridge, s.table) if s.table is not None else None,
                     "flow": str(s.flow) if s.flow else None, "reason": why} for s, why in r.dropped],
        "learned": r.learned,
        "hosts_compiled": r.hosts_compiled,
    }


def leg_text(d: dict[str, Any]) -> str:
    key = d["key"] or 0
    where = f"{d['from_host']} {d['src_vtep']} -> {d['to_host'] or '?'} {d['dst_vtep']}"
    ports = f"{d['out_port']} -> {d['in_port']}" if d["in_port"] else d["out_port"]
    text = f"tunnel {d['type']} key={key:#x} ({key}): {where} ({ports})"
    return text + (f": LOST, {d['lost']}" if d["lost"] else "")


def to_text(r: TraceResult) -> str:
    p = r.probe
    lines = [f"trace: {p.port.name} on {p.port.host} ({p.port.iface})",
             f"frame: {p.frame}"]
    lines += [f"note: {n}" for n in p.notes]
    if p.warmup:
        lines.append(f"learned first: {len(p.warmup)} frame(s) of the exchange, {r.learned} flow(s) added by learn()")
    where: tuple[str, str] | None = None
    for s in r.steps:
        if s.kind in ("tunnel", "lost"):
            lines.append(leg_text(leg(s)))
            where = None
            continue
        if (s.host, s.bridge) != where:
            where = (s.host, s.bridge)
            lines.append(f"{s.host} {s.bridge}: {s.frame}")
        if s.table is not None:
            name = r.table_name(s.host, s.bridge, s.table)
            lines.append(f"  table {s.table} {name}: {s.flow if s.flow else 'no flow matches'}")
        elif s.kind != "output":  # outputs show in the summary, tunnels as legs
            lines.append(f"    {s.note}")
    for host, name, iface in r.delivered:
        lines.append(f"delivered: {name or '?'} on {host} ({iface})")
    for s, why in r.dropped:
        if s.table is not None:
            lines.append(f"dropped: {s.host} {s.bridge} table {s.table} {r.table_name(s.host, s.bridge, s.table)}: "
                         f"{why}" + (f" ({s.flow})" if s.flow else ""))
        else:
            lines.append(f"dropped: {s.host} {s.bridge}: {why} ({s.note})")
    if not r.delivered and not r.dropped:
        lines.append("end: the frame left on no port")
    return "\n".join(lines) + "\n"
