"""`ovsflow verify TOPOLOGY --live`: do the switches hold exactly the compiled program?

Per host and bridge, the flows whose cookie is the program's (COOKIE_STATIC; learned entries and
other tools' flows are left alone) are read with `ovs-ofctl --no-stats dump-flows BRIDGE
cookie=.../-1` and compared with the program's flows of that cookie; the groups of every bridge
that has groups in the program (br-tun) are read with `dump-groups`. Spellings are normalised by
OVS itself: both sides go through `ovs-ofctl diff-flows FILE /dev/null`, which parses a flow file
and prints every flow canonically (so `dl_vlan=5` and `vlan_tci=0x1005/0x1fff`, `actions=` and
`actions=drop`, `output:2` and `2` are one text); a group's buckets go through it the same way, as
pseudo-flows carrying their actions. A flow is then keyed by (table, priority, match): missing
(program only), extra (switch only), changed (same key, other actions or timeouts). Groups by id:
missing, extra, changed (type or buckets, compared as a multiset: every bucket of an `all` group
is taken whatever the order).

The switches are found as `ovsflow trace --live` finds them (trace_live.local_switches names the
host a local OVS serves; a lab's hosts come from its state); ovs-ofctl is run with that OVS's
environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..compiler import compile_host
from ..graph import TopologyGraph
from ..model import Topology
from ..program import COOKIE_STATIC, BridgeProgram

Ofctl = Callable[..., str]  # ovs-ofctl ARGS against one host's OVS -> stdout; raises on failure
OPENFLOW = "OpenFlow14"  # groups need >= 1.1; ovsflow's bridges allow 1.0-1.5
COOKIE_FILTER = f"cookie={COOKIE_STATIC:#x}/-1"
_NOT_KEY = ("cookie=", "idle_timeout=", "hard_timeout=", "importance=")
_GROUP = re.compile(r"group_id=(\d+),type=([a-z]+)(?:,(.*))?$")
_BUCKET_KEY = re.compile(r"(?:^|[ ,])priority=(\d+),metadata=(0x[0-9a-f]+|\d+)")


class LiveError(Exception):
    """The switches cannot be read or matched with the topology: one line, exit 2."""


@dataclass
class BridgeDrift:
    host: str
    bridge: str
    flows: int = 0  # the program's flows compared
    groups: int = 0
    missing: list[str] = field(default_factory=list)  # canonical text of the program's flow
    extra: list[str] = field(default_factory=list)  # the switch's
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (key, program's rest, switch's rest)
    groups_missing: list[str] = field(default_factory=list)
    groups_extra: list[str] = field(default_factory=list)
    groups_changed: list[tuple[str, str]] = field(default_factory=list)  # (program, switch)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.extra or self.changed or self.groups_missing or self.groups_extra
                     or self.groups_changed)

    def lines(self) -> list[str]:
        head = f"{self.host} {self.bridge}: "
        if not self.drift:
            return [head + f"no drift ({self.flows} flows, {self.groups} groups)"]
        n_f = len(self.missing) + len(self.extra) + len(self.changed)
        n_g = len(self.groups_missing) + len(self.groups_extra) + len(self.groups_changed)
        out = [head + f"DRIFT: {n_f} flow(s), {n_g} group(s) differ"]
        out += [f"  missing flow: {t}" for t in self.missing]
        out += [f"  extra flow:   {t}" for t in self.extra]
        for key, mine, theirs in self.changed:
            out += [f"  changed flow: {key}", f"    program: {mine}", f"    switch:  {theirs}"]
        out += [f"  missing group: {t}" for t in self.groups_missing]
        out += [f"  extra group:   {t}" for t in self.groups_extra]
        for mine, theirs in self.groups_changed:
            out += ["  changed group:", f"    program: {mine}", f"    switch:  {theirs}"]
        return out


# --- normalising ---------------------------------------------------------------------------------

def _diff_flows(lines: list[str]) -> list[str]:
    """Every flow of `lines` as OVS prints it: `ovs-ofctl diff-flows FILE /dev/null` parses the file
    and prints each flow ('-' first). Exit 2 means 'differences', i.e. success here."""
    if not lines:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as fh:
        fh.write("\n".join(lines) + "\n")
        path = fh.name
    try:
        proc = subprocess.run(["ovs-ofctl", "-O", OPENFLOW, "diff-flows", path, os.devnull],
                              capture_output=True, text=True)
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode not in (0, 2) or proc.stderr.strip():
        raise LiveError(f"ovs-ofctl diff-flows: {(proc.stderr.strip() or 'failed').splitlines()[0]}")
    return [ln[1:] for ln in proc.stdout.splitlines() if ln.startswith("-")]


def split_flow(text: str) -> tuple[str, str]:
    """A canonical flow line as (table, priority and match; cookie, timeouts and actions)."""
    head, _, actions = text.partition(" actions=")
    tokens = head.split()
    key = " ".join(t for t in tokens if not t.startswith(_NOT_KEY))
    rest = " ".join([t for t in tokens if t.startswith(_NOT_KEY)] + ["actions=" + actions])
    return key, rest


def canonical_flows(lines: list[str]) -> dict[str, str]:
    """key -> rest, both as OVS prints them (see split_flow)."""
    return dict(split_flow(t) for t in _diff_flows(lines))


def parse_groups(text: str) -> dict[int, tuple[str, list[str]]]:
    """`dump-groups` output (or ovsflow's group lines) as group id -> (type, bucket action texts)."""
    out: dict[int, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        m = _GROUP.search(line.strip())
        if not m:
            continue
        buckets = []
        for b in (m.group(3) or "").split("bucket=")[1:]:
            b = b.rstrip(",")
            _, sep, acts = b.partition("actions=")
            buckets.append(acts if sep else "")
        out[int(m.group(1))] = (m.group(2), buckets)
    return out


def canonical_groups(groups: dict[int, tuple[str, list[str]]]) -> dict[int, tuple[str, tuple[str, ...]]]:
    """Bucket actions normalised by OVS (as pseudo-flows: priority = bucket index + 1, metadata =
    group id), buckets sorted."""
    lines = [f"table=0,priority={i + 1},metadata={gid} actions={acts or 'drop'}"
             for gid, (_, buckets) in groups.items() for i, acts in enumerate(buckets)]
    buckets: dict[int, list[str]] = {gid: [] for gid in groups}
    for text in _diff_flows(lines):
        m = _BUCKET_KEY.search(text)
        if not m:
            raise LiveError(f"cannot read back a group bucket: {text}")
        buckets[int(m.group(2), 0)].append(text.partition(" actions=")[2])
    return {gid: (typ, tuple(sorted(buckets[gid]))) for gid, (typ, _) in groups.items()}


def _group_text(gid: int, typ: str, buckets: tuple[str, ...]) -> str:
    return f"group_id={gid},type={typ}" + "".join(f",bucket=actions={b}" for b in buckets)


# --- comparing -----------------------------------------------------------------------------------

def _strip_replies(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("OFPST_", "NXST_"))]


def compare_bridge(host: str, bridge: BridgeProgram, ofctl: Ofctl) -> BridgeDrift:
    """One bridge of one host: the program against what `ofctl` reads from the switch."""
    d = BridgeDrift(host, bridge.name)
    mine_flows = [f.ofctl() for f in bridge.flows if f.cookie == COOKIE_STATIC]
    d.flows = len(mine_flows)
    try:
        theirs_text = ofctl("--no-stats", "dump-flows", bridge.name, COOKIE_FILTER)
    except (RuntimeError, OSError) as exc:
        raise LiveError(f"{host} {bridge.name}: cannot read flows: {_first(exc)}") from None
    mine, theirs = canonical_flows(mine_flows), canonical_flows(_strip_replies(theirs_text))
    for key in sorted(mine.keys() - theirs.keys()):
        d.missing.append(f"{key} {mine[key]}")
    for key in sorted(theirs.keys() - mine.keys()):
        d.extra.append(f"{key} {theirs[key]}")
    for key in sorted(mine.keys() & theirs.keys()):
        if mine[key] != theirs[key]:
            d.changed.append((key, mine[key], theirs[key]))
    if bridge.groups or bridge.role == "tun":
        try:
            dumped = ofctl("dump-groups", bridge.name)
        except (RuntimeError, OSError) as exc:
            raise LiveError(f"{host} {bridge.name}: cannot read groups: {_first(exc)}") from None
        gm = canonical_groups(parse_groups("\n".join(g.ofctl() for g in bridge.groups)))
        gt = canonical_groups(parse_groups(dumped))
        d.groups = len(gm)
        d.groups_missing = [_group_text(g, *gm[g]) for g in sorted(gm.keys() - gt.keys())]
        d.groups_extra = [_group_text(g, *gt[g]) for g in sorted(gt.keys() - gm.keys())]
        d.groups_changed = [(_group_text(g, *gm[g]), _group_text(g, *gt[g]))
                            for g in sorted(gm.keys() & gt.keys()) if gm[g] != gt[g]]
    return d


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def compare_hosts(topo: Topology, switches: dict[str, Ofctl]) -> list[BridgeDrift]:
    """Every bridge of every host in `switches` (sorted by host, then the program's bridge order)."""
    graph = TopologyGraph(topo)
    out = []
    for host in sorted(switches):
        program = compile_host(topo, host, graph=graph)
        out += [compare_bridge(host, b, switches[host]) for b in program.bridges]
    return out


# --- finding the switches --------------------------------------------------------------------------

def local_ofctl(*args: str) -> str:
    """ovs-ofctl against the local OVS (OVS_RUNDIR selects a private one)."""
    proc = subprocess.run(["ovs-ofctl", "-O", OPENFLOW, *args], capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"ovs-ofctl exit {proc.returncode}")
    return proc.stdout


def find_switches(topo: Topology, lab: str | None, host: str | None) -> dict[str, Ofctl]:
    """host -> its ovs-ofctl: a lab's hosts (its state, as `trace --live --lab`), or the local OVS as
    `host` (default: the host whose VTEP its tunnel ports use, as `trace --live` tells)."""
    if lab:
        if host:
            raise LiveError("--host: not with --lab (every host of the lab is compared)")
        from ..lab import lab as labmod

        state = labmod.load_state(lab)
        if state is None:
            raise LiveError(f"--lab: no lab named {lab}")
        missing = sorted(set(topo.hosts) - set(state.hosts))
        unknown = sorted(set(state.hosts) - set(topo.hosts))
        if missing or unknown:
            raise LiveError(f"--lab: lab {lab} does not run this topology's hosts "
                            f"(not in the lab: {', '.join(missing) or '-'}; not in the topology: {', '.join(unknown) or '-'})")
        return {h: labmod.host_ovs(state, h).ofctl for h in sorted(state.hosts)}
    if host:
        if host not in topo.hosts:
            raise LiveError(f"--host: no host {host} in the topology")
        return {host: local_ofctl}
    from ..trace_live import local_switches

    try:
        (name,) = local_switches({h.vtep: h.name for h in topo.hosts.values()})
    except (RuntimeError, OSError) as exc:
        raise LiveError(f"{_first(exc)} (or --host NAME)") from None
    return {name: local_ofctl}


def live_text(drifts: list[BridgeDrift]) -> str:
    return "\n".join(line for d in drifts for line in d.lines()) + "\n"
