"""Pipeline declarations (pipelines/*.yaml) and the checks every compiled flow must pass.

The pipeline is data, declared once: which tables exist, what each may match and do, where it may go
next and what happens on a miss. The compiler generates the miss flows from it and refuses any flow
that breaks it, so a table's contract is enforced rather than remembered. The same place enforces
OpenFlow 1.1+ consistency rules that ovs-ofctl would otherwise reject at load time (FACTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

import yaml

from . import flow as F

ACTION_KINDS: dict[type, str] = {
    F.Output: "output",
    F.Group: "group",
    F.PushVlan: "push_vlan",
    F.PopVlan: "pop_vlan",
    F.SetField: "set_field",
    F.Move: "move",
    F.Learn: "learn",
    F.GotoTable: "goto_table",
}


class PipelineError(ValueError):
    """A compiled flow breaks its table's declaration: a bug in the compiler, never the user's input."""


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    purpose: str
    match: frozenset[str]
    actions: frozenset[str]
    next: tuple[int, ...]
    miss_goto: int | None  # None = drop

    def miss_flow(self, cookie: int) -> F.Flow:
        actions = (F.GotoTable(self.miss_goto),) if self.miss_goto is not None else ()
        return F.Flow.make(self.id, 0, {}, actions, cookie=cookie)


@dataclass(frozen=True)
class Pipeline:
    role: str
    description: str
    tables: dict[int, Table]
    _checked: set = field(default_factory=set, compare=False, repr=False)

    def check(self, flow: F.Flow) -> None:
        """Raise PipelineError unless `flow` keeps its table's contract."""
        self.check_all((flow,))

    def check_all(self, flows: Iterable[F.Flow]) -> set[int]:
        """`check` for many flows; returns the group ids their actions use. The verdict depends
        only on a flow's shape (fields, action kinds, goto targets, VLAN facts), so shapes seen
        before pass at the cost of one dict lookup: 50,000 l2pop flows share a handful of shapes.
        Flows that share one actions tuple (the compiler builds one per VTEP) share its shape
        too, computed once per call."""
        checked = self._checked
        action_shapes: dict[int, tuple] = {}
        groups: set[int] = set()
        for flow in flows:
            acts = action_shapes.get(id(flow.actions))
            if acts is None:
                acts = action_shapes[id(flow.actions)] = tuple(
                    [(type(a), getattr(a, "table", None), getattr(a, "field", None)) for a in flow.actions])
                groups.update(a.group_id for a in flow.actions if type(a) is F.Group)
            names = tuple([k for k, _ in flow.match])
            shape = (flow.table, flow.priority == 0, names,
                     dict(flow.match).get("vlan_tci") if "vlan_tci" in names else None, acts)
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
        for i, action in enumerate(flow.actions):
            kind = ACTION_KINDS[type(action)]
            if kind not in table.actions and not (flow.priority == 0 and kind == "goto_table" and table.miss_goto is not None):
                raise PipelineError(f"{self.role}: table {table.id} ({table.name}) does not allow action {kind}: {flow}")
            if isinstance(action, F.GotoTable):
                if i != len(flow.actions) - 1:
                    raise PipelineError(f"{self.role}: goto_table must be the last action: {flow}")
                allowed = set(table.next) | ({table.miss_goto} if table.miss_goto is not None else set())
                if action.table not in allowed or action.table <= flow.table:
                    raise PipelineError(f"{self.role}: table {table.id} may not go to table {action.table}: {flow}")
            if isinstance(action, F.Learn) and action.table not in self.tables:
                raise PipelineError(f"{self.role}: learn() into undeclared table {action.table}: {flow}")
        check_openflow_consistency(flow)

    def miss_flows(self, cookie: int) -> list[F.Flow]:
        return [t.miss_flow(cookie) for t in self.tables.values()]


def check_openflow_consistency(flow: F.Flow) -> None:
    """OpenFlow 1.1+ rule OVS enforces: VLAN actions need a VLAN, known from the match or pushed."""
    match = flow.match_dict
    tagged = "dl_vlan" in match
    if "vlan_tci" in match:
        value, mask = match["vlan_tci"] if isinstance(match["vlan_tci"], tuple) else (match["vlan_tci"], 0xFFFF)
        tagged = bool(mask & 0x1000 and value & 0x1000)
        if mask & 0x1000 and not value & 0x1000:
            tagged = False
    for action in flow.actions:
        if isinstance(action, F.PushVlan):
            tagged = True
        elif isinstance(action, F.PopVlan):
            if not tagged:
                raise PipelineError(f"pop_vlan without a matched or pushed VLAN (invalid in OpenFlow 1.1+): {flow}")
            tagged = False
        elif isinstance(action, F.SetField) and action.field == "vlan_vid" and not tagged:
            raise PipelineError(f"set_field vlan_vid without a VLAN header (invalid in OpenFlow 1.1+): {flow}")


def pipelines_dir() -> Path:
    """Installed wheels carry pipelines/ inside the package; a source checkout has it at the top."""
    packaged = resources.files("ovsflow").joinpath("pipelines")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "pipelines"


def parse_pipeline(data: dict, source: str) -> Pipeline:
    tables: dict[int, Table] = {}
    for t in data["tables"]:
        miss = t.get("miss", "drop")
        miss_goto = None if miss == "drop" else int(miss["goto"])
        unknown_match = set(t.get("match", [])) - set(F.FIELDS)
        unknown_actions = set(t.get("actions", [])) - set(ACTION_KINDS.values())
        if unknown_match or unknown_actions:
            raise PipelineError(f"{source}: table {t['id']}: unknown match fields {sorted(unknown_match)} or actions {sorted(unknown_actions)}")
        tables[int(t["id"])] = Table(
            id=int(t["id"]),
            name=t["name"],
            purpose=" ".join(str(t["purpose"]).split()),
            match=frozenset(t.get("match", [])),
            actions=frozenset(t.get("actions", [])),
            next=tuple(int(x) for x in t.get("next", [])),
            miss_goto=miss_goto,
        )
    for table in tables.values():
        for target in table.next + ((table.miss_goto,) if table.miss_goto is not None else ()):
            if target not in tables or target <= table.id:
                raise PipelineError(f"{source}: table {table.id} names next table {target}, which is not a later declared table")
    return Pipeline(role=data["role"], description=data.get("description", ""), tables=tables)


@lru_cache(maxsize=None)
def load_pipeline(role: str) -> Pipeline:
    path = pipelines_dir() / f"br-{role}.yaml"
    with open(path, encoding="utf-8") as fh:
        return parse_pipeline(yaml.safe_load(fh), str(path))
