"""One bridge as the evaluator holds it: its ports, groups and flow tables with OVS's bookkeeping
(packet counts, timeouts), flow checking (the rules OVS applies when a flow is added) and lookup."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..flow import Flow, GroupEntry
from ..packet import Frame
from ..pipeline import openflow_problem
from ..program import BridgeProgram, PortConfig
from .results import EvaluationError


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


def _entry_key(e: Entry) -> tuple[Any, ...]:
    return (-e.flow.priority, e.flow.sort_key())


# ---------------------------------------------------------------------------------------------
# One bridge: tables, groups, ports


class Bridge:
    """The flow tables, groups and ports of one OVS bridge."""

    def __init__(self, name: str, ports: Iterable[PortConfig] = (), flows: Iterable[Flow] = (),
                 groups: Iterable[GroupEntry] = (), host: str = "", check: bool = True) -> None:
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
        self._index: dict[tuple[Any, ...], Entry] = {}
        for f in flows:
            self.add_flow(f, check)

    @classmethod
    def from_program(cls, bp: BridgeProgram, host: str = "", check: bool = True) -> Bridge:
        """`check=False` trusts the flows (the compiler checked them against the pipelines)."""
        return cls(bp.name, bp.ports, bp.flows, bp.groups, host=host, check=check)

    def fork(self) -> Bridge:
        """A copy whose tables change independently (learn() adds, timeouts remove) at the cost
        of copying lists, not flows. Entries are shared: their counters and last-hit times move
        in both (fine for traces, which neither read counters nor advance the clock)."""
        twin = object.__new__(Bridge)
        twin.__dict__.update(self.__dict__)
        twin._tables = {t: list(entries) for t, entries in self._tables.items()}
        twin._index = dict(self._index)
        return twin

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

