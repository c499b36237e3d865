"""The one value type every part of ovsflow speaks: a `Flow` and its actions.

The compiler produces Flows; three consumers read them without ever re-parsing text:
the ovs-ofctl encoder (`ofctl.py`, for render), the Ryu encoder (for the live app) and the
flow-table evaluator (for tests). So a Flow holds typed values (ints, not strings), and its
canonical text form is derived from them, never the other way round.

Field names follow ovs-ofctl(8) ("ovs-fields(7)"), because that is the language operators read;
what each field is (width, kind, codes) is in `fields.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import fields
from .fields import FIELD_ORDER, FIELDS, SET_FIELDS, format_value

OFPVID_PRESENT = fields.OFPVID_PRESENT
IN_PORT = 0xFFFFFFF8  # OpenFlow's OFPP_IN_PORT

MatchValue = int | tuple[int, int]  # exact value, or (value, mask)


def format_match(name: str, value: MatchValue) -> str:
    kind = FIELDS[name].kind
    if isinstance(value, tuple):
        v, m = value
        mask_kind = "hex" if kind in ("int", "port") else kind
        return f"{name}={format_value(kind, v)}/{format_value(mask_kind, m)}"
    return f"{name}={format_value(kind, value)}"


# ---------------------------------------------------------------------------------------------
# Actions. Each is a small frozen dataclass with an `ofctl()` text form.


@dataclass(frozen=True, slots=True)
class Output:
    """Send a copy out of `port` (an OpenFlow port number; IN_PORT for 'back where it came')."""

    port: int

    def ofctl(self) -> str:
        return "IN_PORT" if self.port == IN_PORT else f"output:{self.port}"


@dataclass(frozen=True, slots=True)
class Group:
    group_id: int

    def ofctl(self) -> str:
        return f"group:{self.group_id}"


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = 0x8100

    def ofctl(self) -> str:
        return f"push_vlan:{self.ethertype:#06x}"


@dataclass(frozen=True, slots=True)
class PopVlan:
    def ofctl(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True, slots=True)
class DecTtl:
    """Decrement the IPv4 TTL / IPv6 hop limit. A frame whose TTL is already 0 or 1 is not sent on
    (OVS stops the actions); ovsflow's routing tables drop those frames by match before, so no
    packet-in for an expired TTL can ever reach a controller."""

    def ofctl(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True, slots=True)
class SetField:
    """OpenFlow 1.2+ set_field; `field` is a set_field spelling from `fields.SET_FIELDS`."""

    field: str
    value: int

    def ofctl(self) -> str:
        return f"set_field:{format_value(SET_FIELDS[self.field].kind, self.value)}->{self.field}"


@dataclass(frozen=True, slots=True)
class Move:
    """NXM move (copy bits between fields), e.g. for an ARP responder swapping addresses."""

    src: str  # a field with an NXM name (fields.NXM_FIELDS)
    dst: str

    def ofctl(self) -> str:
        return f"move:{FIELDS[self.src].nxm}[]->{FIELDS[self.dst].nxm}[]"


@dataclass(frozen=True, slots=True)
class Load:
    """NXM load of a constant into the low bits of a field: what learn()'s `load:` specs become
    in the learned flow (OVS shows them the same way in dump-flows)."""

    dst: str  # a field with an NXM name
    value: int
    n_bits: int | None = None

    def ofctl(self) -> str:
        bits = "" if self.n_bits is None else f"0..{self.n_bits - 1}"
        value = hex(self.value) if self.value > 9 else str(self.value)
        return f"load:{value}->{FIELDS[self.dst].nxm}[{bits}]"


@dataclass(frozen=True, slots=True)
class LearnSpec:
    """One line of a learn() action.

    kind 'match': the learned flow matches `dst` (bits) equal to the current packet's `src`
    (src None means the same field). kind 'load': the learned flow loads `src` (a field name or an
    int constant) into `dst`. kind 'output': the learned flow outputs to the port in field `src`.
    """

    kind: str
    dst: str | None
    src: str | int | None = None
    n_bits: int | None = None  # None = the whole field

    def ofctl(self) -> str:
        def ref(name: str) -> str:
            return f"{FIELDS[name].nxm}[{'' if self.n_bits is None else f'0..{self.n_bits - 1}'}]"

        if self.kind == "match":
            if self.src is None:
                return ref(self.dst)  # type: ignore[arg-type]
            return f"{ref(self.dst)}={ref(self.src)}"  # type: ignore[arg-type]
        if self.kind == "load":
            src_text = str(self.src) if isinstance(self.src, int) else ref(self.src)  # type: ignore[arg-type]
            return f"load:{src_text}->{ref(self.dst)}"  # type: ignore[arg-type]
        if self.kind == "output":
            return f"output:{ref(self.src)}"  # type: ignore[arg-type]
        raise ValueError(f"unknown learn spec kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Learn:
    """Nicira learn(): add a flow to `table` built from the packet being processed."""

    table: int
    priority: int
    cookie: int
    specs: tuple[LearnSpec, ...]
    hard_timeout: int = 0
    idle_timeout: int = 0

    def ofctl(self) -> str:
        head = [f"table={self.table}"]
        if self.idle_timeout:
            head.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            head.append(f"hard_timeout={self.hard_timeout}")
        head += [f"priority={self.priority}", f"cookie={self.cookie:#x}"]
        return "learn(" + ",".join(head + [s.ofctl() for s in self.specs]) + ")"


@dataclass(frozen=True, slots=True)
class GotoTable:
    """OpenFlow 1.1+ goto_table instruction: always last, always to a later table."""

    table: int

    def ofctl(self) -> str:
        return f"goto_table:{self.table}"


Action = Output | Group | PushVlan | PopVlan | SetField | Move | Load | Learn | DecTtl | GotoTable

# ---------------------------------------------------------------------------------------------


def _field_rank(item: tuple[str, MatchValue]) -> int:
    return FIELD_ORDER[item[0]]


@dataclass(frozen=True, slots=True, order=False)
class Flow:
    """One OpenFlow flow entry as ovsflow wants it on a switch.

    `match` is a tuple of (field, value) pairs in canonical field order, so two Flows that mean the
    same thing are equal and hash the same. Build it with `Flow.make()` to get that ordering.
    An empty `actions` tuple means drop.
    """

    table: int
    priority: int
    match: tuple[tuple[str, MatchValue], ...]
    actions: tuple[Action, ...]
    cookie: int = 0
    hard_timeout: int = 0
    idle_timeout: int = 0

    @staticmethod
    def make(
        table: int,
        priority: int,
        match: Mapping[str, MatchValue] | None = None,
        actions: tuple[Action, ...] | list[Action] = (),
        cookie: int = 0,
        hard_timeout: int = 0,
        idle_timeout: int = 0,
    ) -> Flow:
        items = tuple(sorted((match or {}).items(), key=_field_rank))
        return Flow(table, priority, items, tuple(actions), cookie, hard_timeout, idle_timeout)

    @property
    def match_dict(self) -> dict[str, MatchValue]:
        return dict(self.match)

    def sort_key(self) -> tuple[Any, ...]:
        """Table, then priority (high first), then the match by value. Cheap (no text) because
        render sorts every flow; exact and masked values of one field compare as (value, mask)."""
        return (self.table, -self.priority,
                tuple([(k, v if v.__class__ is tuple else (v, -1)) for k, v in self.match]))

    def match_text(self) -> str:
        return ",".join(format_match(k, v) for k, v in self.match)

    def actions_text(self) -> str:
        return ",".join(a.ofctl() for a in self.actions) if self.actions else "drop"

    def ofctl(self) -> str:
        """The flow in ovs-ofctl add-flow syntax (also what `replace-flows` and `diff-flows` read)."""
        parts = [f"cookie={self.cookie:#x}", f"table={self.table}", f"priority={self.priority}"]
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        m = self.match_text()
        if m:
            parts.append(m)
        return ",".join(parts) + " actions=" + self.actions_text()

    def __str__(self) -> str:
        return self.ofctl()


@dataclass(frozen=True, slots=True)
class Bucket:
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """An OpenFlow group; ovsflow floods every network through one (type all: a bucket per remote
    VTEP, which is head-end replication)."""

    group_id: int
    type: str
    buckets: tuple[Bucket, ...] = field(default_factory=tuple)

    def ofctl(self) -> str:
        buckets = ",".join(
            "bucket=actions=" + ",".join(a.ofctl() for a in b.actions) for b in self.buckets
        )
        return f"group_id={self.group_id},type={self.type}" + ("," + buckets if buckets else "")
