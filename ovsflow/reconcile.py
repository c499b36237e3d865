"""The pure diff behind the live app: what a switch has vs what the compiler wants -> the changes.

Rules: only flows carrying the ovsflow cookie (program.COOKIE_BASE under COOKIE_MASK) are ever
modified or deleted; flows that learn() added (COOKIE_LEARNED) are kept; a switch that already
holds the program gets an empty plan (zero flow-mods). Both sides must be in the canonical form of
`openflow.encode.canonical_flow` so that equal flows compare equal.

A flow's identity is (table, priority, match), as in OpenFlow: a second ADD with the same identity
replaces the first. A changed flow is a `modify` when only its actions differ (MODIFY_STRICT keeps
its counters), and a `replace` (an ADD over it) when its cookie or timeouts differ too.

Groups have no cookie in OpenFlow 1.3/1.4, so ownership is by bridge: every group on a bridge
ovsflow programs is ovsflow's (the rule `render` follows too); `owns_group` narrows that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import program
from .fields import mac
from .flow import Flow, GroupEntry, MatchValue

if TYPE_CHECKING:
    from .model import Topology

FlowKey = tuple[int, int, tuple[tuple[str, "MatchValue"], ...]]  # (table, priority, match)


def is_ours(cookie: int) -> bool:
    return cookie & program.COOKIE_MASK == program.COOKIE_BASE


def is_learned(cookie: int) -> bool:
    return cookie == program.COOKIE_LEARNED


def key(f: Flow) -> FlowKey:
    return (f.table, f.priority, f.match)


def owns_every_group(group_id: int) -> bool:
    """The default: on a bridge ovsflow programs, every group is ovsflow's."""
    return True


@dataclass(frozen=True)
class Plan:
    """The difference, in the order it must be applied inside one bundle."""

    flow_adds: tuple[Flow, ...] = ()
    flow_modifies: tuple[Flow, ...] = ()  # same cookie and timeouts: MODIFY_STRICT
    flow_replaces: tuple[Flow, ...] = ()  # cookie/timeouts changed: ADD over the old one
    flow_deletes: tuple[Flow, ...] = ()  # the switch's flow, deleted cookie-exact
    group_adds: tuple[GroupEntry, ...] = ()
    group_modifies: tuple[GroupEntry, ...] = ()
    group_deletes: tuple[GroupEntry, ...] = ()
    kept_learned: int = 0
    unchanged: int = 0
    notes: tuple[str, ...] = field(default=())
    # A VM moved (learn networks): (local VLAN, MAC) whose learn()ed entry is deleted, and the
    # entries that point at its new VTEP meanwhile (compiler.HostCompiler.tun_moved)
    forget: tuple[tuple[int, int], ...] = ()
    hints: tuple[Flow, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.flow_adds or self.flow_modifies or self.flow_replaces or self.flow_deletes
                    or self.group_adds or self.group_modifies or self.group_deletes or self.forget or self.hints)

    @property
    def n_flow_mods(self) -> int:
        return len(self.flow_adds) + len(self.flow_modifies) + len(self.flow_replaces) + len(self.flow_deletes)

    def summary(self) -> str:
        return (f"added={len(self.flow_adds)} modified={len(self.flow_modifies) + len(self.flow_replaces)} "
                f"deleted={len(self.flow_deletes)} groups(+{len(self.group_adds)} "
                f"~{len(self.group_modifies)} -{len(self.group_deletes)}) "
                f"unchanged={self.unchanged} learned_kept={self.kept_learned}"
                + (f" forgot={len(self.forget)} hinted={len(self.hints)}" if self.forget or self.hints else ""))


def plan(
    desired: Iterable[Flow],
    actual: Iterable[Flow],
    desired_groups: Iterable[GroupEntry] = (),
    actual_groups: Iterable[GroupEntry] = (),
    owns_group: Callable[[int], bool] | None = None,
) -> Plan:
    """What to send so that the switch's ovsflow flows (and groups) become `desired`."""
    want: dict[FlowKey, Flow] = {}
    for f in desired:
        k = key(f)
        if k in want and want[k] != f:
            raise ValueError(f"desired program has two flows with one identity: {f.ofctl()}")
        want[k] = f
    have: dict[FlowKey, Flow] = {}
    learned = 0
    deletes: list[Flow] = []
    for f in actual:
        if not is_ours(f.cookie):
            continue  # not ours: never touched (the switch reply may include them if unfiltered)
        if is_learned(f.cookie):
            learned += 1
            continue
        k = key(f)
        if k in want:
            have[k] = f
        else:
            deletes.append(f)
    adds: list[Flow] = []
    modifies: list[Flow] = []
    replaces: list[Flow] = []
    unchanged = 0
    for k, f in want.items():
        old = have.get(k)
        if old is None:
            adds.append(f)
        elif old == f:
            unchanged += 1
        elif (old.cookie, old.hard_timeout, old.idle_timeout) == (f.cookie, f.hard_timeout, f.idle_timeout):
            modifies.append(f)
        else:
            replaces.append(f)

    gwant = {g.group_id: g for g in desired_groups}
    ghave = {g.group_id: g for g in actual_groups}
    owns = owns_group or owns_every_group
    g_adds = [g for gid, g in sorted(gwant.items()) if gid not in ghave]
    g_mods = [g for gid, g in sorted(gwant.items()) if gid in ghave and ghave[gid] != g]
    g_dels = [g for gid, g in sorted(ghave.items()) if gid not in gwant and owns(gid)]
    # Desired order is the program's (the compiler's sorted order); no re-sorting: at 50,000 flows
    # building sort keys (text) would cost more than the diff itself.
    return Plan(
        flow_adds=tuple(adds),
        flow_modifies=tuple(modifies),
        flow_replaces=tuple(replaces),
        flow_deletes=tuple(deletes),
        group_adds=tuple(g_adds),
        group_modifies=tuple(g_mods),
        group_deletes=tuple(g_dels),
        kept_learned=learned,
        unchanged=unchanged,
    )


def moved_macs(old: Topology, new: Topology) -> dict[str, dict[int, str]]:
    """network -> {MAC: its new host} for ports on another host in `new` than in `old` (by MAC
    within the network, so a port renamed on the way counts too)."""
    where_old = {(p.network, p.mac): p.host for p in old.ports.values()}
    out: dict[str, dict[int, str]] = {}
    for p in new.ports.values():
        host = where_old.get((p.network, p.mac))
        if host is not None and host != p.host:
            out.setdefault(p.network, {})[mac(p.mac)] = p.host
    return out


def ordered_changes(p: Plan) -> list[tuple[str, str, Flow | GroupEntry | tuple[int, int]]]:
    """(kind, command, item) in bundle order: groups a flow may point at exist before the flow
    arrives; stale flows go before the groups they point at (deleting a group deletes its flows);
    a moved VM's learned entries are deleted, then its new location is hinted, last."""
    out: list[tuple[str, str, Flow | GroupEntry | tuple[int, int]]] = []
    out += [("group", "add", g) for g in p.group_adds]
    out += [("group", "modify", g) for g in p.group_modifies]
    out += [("flow", "delete", f) for f in p.flow_deletes]
    out += [("flow", "modify", f) for f in p.flow_modifies]
    out += [("flow", "add", f) for f in p.flow_replaces]
    out += [("flow", "add", f) for f in p.flow_adds]
    out += [("group", "delete", g) for g in p.group_deletes]
    out += [("learned", "delete", vm) for vm in p.forget]
    out += [("flow", "add", f) for f in p.hints]
    return out
