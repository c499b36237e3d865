"""Pipeline declarations (pipelines/*.yaml) and the checks every compiled flow must pass.

The pipeline is data, declared once: which tables exist, what each may match and do, where it may go
next and what happens on a miss. The compiler asks the declaration for tables by name (as Faucet's
code asks its table objects), so a table's id lives only in the YAML; it generates the miss flows
from it and refuses any flow that breaks it, so a table's contract is enforced rather than
remembered. `openflow_problem` holds the OpenFlow 1.1+ rules that ovs-ofctl and OVS would otherwise
reject at load time; the evaluator applies the same function to every flow it is given.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import flow as F
from .fields import ETH_TYPE_IP, ETH_TYPE_IPV6, FIELDS, MATCH_FIELDS, OFPVID_PRESENT
from .fields import field as field_named

ACTION_KINDS: dict[type, str] = {
    F.Output: "output",
    F.Group: "group",
    F.PushVlan: "push_vlan",
    F.PopVlan: "pop_vlan",
    F.SetField: "set_field",
    F.Move: "move",
    F.Load: "load",
    F.Learn: "learn",
    F.DecTtl: "dec_ttl",
    F.GotoTable: "goto_table",
}
ROLES = ("int", "tun")


class PipelineError(ValueError):
    """A compiled flow breaks its table's declaration: a bug in the compiler, never the user's input."""


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    purpose: str  # `{name}` placeholders already replaced by table ids
    match: frozenset[str]
    actions: frozenset[str]
    next: tuple[int, ...]
    miss_goto: int | None  # None = drop
    tunnel: str | None = None  # the tunnel type whose frames this table receives
    learn_into: int | None = None  # the table learn() in this table writes

    def flow(self, priority: int, match: Mapping[str, F.MatchValue] | None = None,
             actions: Iterable[F.Action] = (), cookie: int = 0, hard_timeout: int = 0,
             idle_timeout: int = 0) -> F.Flow:
        """A flow in this table (checked later, with the whole program)."""
        return F.Flow.make(self.id, priority, match, tuple(actions), cookie, hard_timeout, idle_timeout)

    def goto(self) -> F.GotoTable:
        """The instruction that continues in this table."""
        return F.GotoTable(self.id)

    def miss_flow(self, cookie: int) -> F.Flow:
        actions = (F.GotoTable(self.miss_goto),) if self.miss_goto is not None else ()
        return F.Flow.make(self.id, 0, {}, actions, cookie=cookie)


@dataclass(frozen=True)
class Pipeline:
    role: str
    description: str
    tables: dict[int, Table]
    _checked: set[tuple[Any, ...]] = field(default_factory=set, compare=False, repr=False)
    _by_name: dict[str, Table] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update((t.name, t) for t in self.tables.values())

    def __getitem__(self, name: str) -> Table:
        """A table by name; KeyError names the role and the declared tables."""
        table = self._by_name.get(name)
        if table is None:
            raise KeyError(f"br-{self.role} declares no table {name!r} (it has {', '.join(self.names())})")
        return table

    def names(self) -> list[str]:
        return [t.name for t in sorted(self.tables.values(), key=lambda t: t.id)]

    def tunnel_table(self, tunnel_type: str) -> Table:
        for t in self.tables.values():
            if t.tunnel == tunnel_type:
                return t
        raise KeyError(f"br-{self.role} declares no table for {tunnel_type} tunnels")

    def check(self, flow: F.Flow) -> None:
        """Raise PipelineError unless `flow` keeps its table's contract."""
        self.check_all((flow,))

    def check_all(self, flows: Iterable[F.Flow]) -> set[int]:
        """`check` for many flows; returns the group ids their actions use. The verdict depends
        only on a flow's shape (fields, the values prerequisites look at, action kinds, goto
        targets, VLAN facts), so shapes seen before pass at the cost of one dict lookup: 50,000
        l2pop flows share a handful of shapes. Flows that share one actions tuple (the compiler
        builds one per VTEP) share its shape too, computed once per call."""
        checked = self._checked
        action_shapes: dict[int, tuple[Any, ...]] = {}
        groups: set[int] = set()
        for flow in flows:
            acts = action_shapes.get(id(flow.actions))
            if acts is None:
                acts = action_shapes[id(flow.actions)] = tuple(
                    [(type(a), getattr(a, "table", None), getattr(a, "field", None)) for a in flow.actions])
                groups.update(a.group_id for a in flow.actions if type(a) is F.Group)
            names = tuple([k for k, _ in flow.match])
            keyed = tuple([v for k, v in flow.match if k in _SHAPE_VALUES]) if _SHAPE_VALUES.intersection(names) else ()
            shape = (flow.table, flow.priority == 0, names, keyed, acts)
            if shape not in checked:
                self._check(flow)
                checked.add(shape)
        return groups

    def _check(self, flow: F.Flow) -> None:
        table = self.tables.get(flow.table)
        if table is None:
            raise PipelineError(f"{self.role}: flow for undeclared table {flow.table}: {flow}")
        extra = {k for k, _ in flow.match} - table.match
        if extra:
            raise PipelineError(f"{self.role}: table {table.id} ({table.name}) does not allow match on {sorted(extra)}: {flow}")
        for action in flow.actions:
            kind = ACTION_KINDS[type(action)]
            if kind not in table.actions and not (flow.priority == 0 and kind == "goto_table" and table.miss_goto is not None):
                raise PipelineError(f"{self.role}: table {table.id} ({table.name}) does not allow action {kind}: {flow}")
            if isinstance(action, F.GotoTable):
                allowed = set(table.next) | ({table.miss_goto} if table.miss_goto is not None else set())
                if action.table not in allowed:
                    raise PipelineError(f"{self.role}: table {table.id} may not go to table {action.table}: {flow}")
            if isinstance(action, F.Learn) and action.table != table.learn_into:
                raise PipelineError(f"{self.role}: learn() into table {action.table}, not the declared "
                                    f"{table.learn_into}: {flow}")
        problem = openflow_problem(flow)
        if problem:
            raise PipelineError(f"{problem}: {flow}")

    def miss_flows(self, cookie: int) -> list[F.Flow]:
        return [t.miss_flow(cookie) for t in self.tables.values()]


# Match fields whose values decide prerequisites (a shape must include their values).
_SHAPE_VALUES = frozenset(name for f in FIELDS.values() for name, _ in f.prereqs) | {"vlan_tci"}


def _prereq_problem(match: dict[str, F.MatchValue], name: str, what: str) -> str | None:
    for need, allowed in field_named(name).prereqs:
        have = match.get(need)
        if not isinstance(have, int) or have not in allowed:
            values = "|".join(f"{v:#x}" if need == "dl_type" else str(v) for v in sorted(allowed))
            return f"{what} needs {need}={values} in the match"
    return None


def _vlan_known(match: dict[str, F.MatchValue]) -> bool | None:
    """Whether the match proves a VLAN header present (True), absent (False), or neither (None)."""
    if "dl_vlan" in match:
        return True
    tci = match.get("vlan_tci")
    if tci is not None:
        value, mask = tci if isinstance(tci, tuple) else (tci, 0xFFFF)
        if mask & OFPVID_PRESENT:
            return bool(value & OFPVID_PRESENT)
    return None


def openflow_problem(flow: F.Flow, groups: Collection[int] | None = None) -> str | None:
    """What OVS (ovs-ofctl -O OpenFlow14) would refuse in `flow`, or None.

    The rules ovsflow's flows can meet: match prerequisites (ovs-fields(7): arp_* need
    dl_type=0x0806, nd_target an ICMPv6 solicitation or advertisement, ...), the same for fields
    an action writes or reads; VLAN actions need a VLAN known from the match or pushed before
    (pop_vlan, set_field vlan_vid: OpenFlow 1.1+); goto_table last and forward; groups that exist
    (when `groups` is given).
    """
    match = dict(flow.match)
    for name in match:
        problem = _prereq_problem(match, name, f"match on {name}")
        if problem:
            return problem
    return _actions_problem(flow, flow.actions, match, _vlan_known(match), groups, top=True)


def _actions_problem(flow: F.Flow, actions: tuple[F.Action, ...], match: dict[str, F.MatchValue],
                     vlan: bool | None, groups: Collection[int] | None, top: bool) -> str | None:
    for i, a in enumerate(actions):
        if isinstance(a, F.GotoTable):
            if not top or i != len(actions) - 1:
                return "goto_table must be the last action"
            if a.table <= flow.table:
                return f"goto_table:{a.table} does not go forward"
        elif isinstance(a, F.PopVlan):
            if vlan is not True:
                return "pop_vlan without a matched or pushed VLAN (invalid in OpenFlow 1.1+)"
            vlan = False
        elif isinstance(a, F.PushVlan):
            vlan = True
        elif isinstance(a, F.SetField):
            if a.field == "vlan_vid" and vlan is not True:
                return "set_field vlan_vid without a VLAN header (invalid in OpenFlow 1.1+)"
            problem = _prereq_problem(match, a.field, f"set_field {a.field}")
            if problem:
                return problem
        elif isinstance(a, (F.Move, F.Load)):
            for name in ((a.src, a.dst) if isinstance(a, F.Move) else (a.dst,)):
                problem = _prereq_problem(match, name, f"{type(a).__name__.lower()} of {name}")
                if problem:
                    return problem
            if a.dst == "vlan_tci":
                vlan = None
        elif isinstance(a, F.DecTtl):
            if match.get("dl_type") not in (ETH_TYPE_IP, ETH_TYPE_IPV6):
                return "dec_ttl needs dl_type=0x0800|0x86dd in the match"
        elif isinstance(a, F.Group) and groups is not None and a.group_id not in groups:
            return f"group {a.group_id} does not exist"
    return None


def pipelines_dir() -> Path:
    """Installed wheels carry pipelines/ inside the package; a source checkout has it at the top."""
    packaged = resources.files("ovsflow").joinpath("pipelines")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "pipelines"


def parse_pipeline(data: dict[str, Any], source: str) -> Pipeline:
    """A Pipeline from a parsed pipelines/*.yaml; PipelineError for anything inconsistent."""
    declared = data["tables"]
    ids: dict[str, int] = {}
    for t in declared:
        if t["name"] in ids or int(t["id"]) in ids.values():
            raise PipelineError(f"{source}: table {t['name']!r} ({t['id']}): name or id declared twice")
        ids[t["name"]] = int(t["id"])

    def table_id(name: Any, where: str) -> int:
        if name not in ids:
            raise PipelineError(f"{source}: {where} names table {name!r}, which is not declared")
        return ids[name]

    tables: dict[int, Table] = {}
    for t in declared:
        where = f"table {t['name']}"
        miss = t.get("miss", "drop")
        unknown_match = set(t.get("match", [])) - set(MATCH_FIELDS)
        unknown_actions = set(t.get("actions", [])) - set(ACTION_KINDS.values())
        if unknown_match or unknown_actions:
            raise PipelineError(f"{source}: {where}: unknown match fields {sorted(unknown_match)} or actions {sorted(unknown_actions)}")
        def placeholder(m: re.Match[str], where: str = where) -> str:
            return str(table_id(m.group(1), f"{where} purpose"))

        try:
            purpose = re.sub(r"\{(\w+)\}", placeholder, str(t["purpose"]))
        except KeyError as exc:
            raise PipelineError(f"{source}: {where}: purpose: {exc}") from None
        tables[ids[t["name"]]] = Table(
            id=ids[t["name"]],
            name=t["name"],
            purpose=" ".join(purpose.split()),
            match=frozenset(t.get("match", [])),
            actions=frozenset(t.get("actions", [])),
            next=tuple(table_id(x, where) for x in t.get("next", [])),
            miss_goto=None if miss == "drop" else table_id(miss["goto"], where),
            tunnel=t.get("tunnel"),
            learn_into=table_id(t["learn_into"], where) if "learn_into" in t else None,
        )
    for table in tables.values():
        for target in table.next + ((table.miss_goto,) if table.miss_goto is not None else ()):
            if target <= table.id:
                raise PipelineError(f"{source}: table {table.name} ({table.id}) goes to table {target}, which is not a later table")
    return Pipeline(role=data["role"], description=data.get("description", ""), tables=tables)


@cache
def load_pipeline(role: str, directory: str | None = None) -> Pipeline:
    """br-`role`'s declaration from pipelines/ (or from `directory`: tests renumber a copy)."""
    path = Path(directory or pipelines_dir()) / f"br-{role}.yaml"
    with open(path, encoding="utf-8") as fh:
        return parse_pipeline(yaml.safe_load(fh), str(path))


@dataclass(frozen=True)
class Pipelines:
    """Both bridges' declarations, as one value the compiler is given."""

    int: Pipeline
    tun: Pipeline

    def __getitem__(self, role: str) -> Pipeline:
        return self.int if role == "int" else self.tun

    @staticmethod
    def load(directory: str | None = None) -> Pipelines:
        return Pipelines(load_pipeline("int", directory), load_pipeline("tun", directory))
