"""The one value type every part of ovsflow speaks: a `Flow` and its actions.

The compiler produces Flows; three consumers read them without ever re-parsing text:
the ovs-ofctl encoder (`ofctl.py`, for render), the Ryu encoder (for the live app) and the
flow-table evaluator (for tests). So a Flow holds typed values (ints, not strings), and its
canonical text form is derived from them, never the other way round.

Field names follow ovs-ofctl(8) ("ovs-fields(7)"), because that is the language operators read.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Union

# ---------------------------------------------------------------------------------------------
# Match fields: name -> (kind, bit width). The kind decides how a value is printed and parsed.
# Order here is the canonical order of fields in a flow's text.
FIELDS: dict[str, tuple[str, int]] = {
    "in_port": ("port", 32),
    "tun_id": ("hex", 64),
    "dl_vlan": ("int", 12),  # "a VLAN header is present and its VID is N"
    "vlan_tci": ("hex", 16),  # raw TCI with mask; 0x0000/0x1fff means "no VLAN header"
    "dl_src": ("mac", 48),
    "dl_dst": ("mac", 48),
    "dl_type": ("hex", 16),
    "nw_proto": ("int", 8),
    "arp_op": ("int", 16),
    "arp_spa": ("ipv4", 32),
    "arp_tpa": ("ipv4", 32),
    "ipv6_src": ("ipv6", 128),
    "ipv6_dst": ("ipv6", 128),
    "icmpv6_type": ("int", 8),
    "nd_target": ("ipv6", 128),
}
FIELD_ORDER = {name: i for i, name in enumerate(FIELDS)}

# Fields that actions may set (set_field) or learn specs may name, with their NXM names.
NXM_NAMES: dict[str, str] = {
    "in_port": "NXM_OF_IN_PORT",
    "tun_id": "NXM_NX_TUN_ID",
    "vlan_tci": "NXM_OF_VLAN_TCI",
    "dl_src": "NXM_OF_ETH_SRC",
    "dl_dst": "NXM_OF_ETH_DST",
    "nw_proto": "NXM_OF_IP_PROTO",
    "arp_op": "NXM_OF_ARP_OP",
    "arp_spa": "NXM_OF_ARP_SPA",
    "arp_tpa": "NXM_OF_ARP_TPA",
    "arp_sha": "NXM_NX_ARP_SHA",
    "arp_tha": "NXM_NX_ARP_THA",
    "ipv6_src": "NXM_NX_IPV6_SRC",
    "ipv6_dst": "NXM_NX_IPV6_DST",
    "nd_target": "NXM_NX_ND_TARGET",
    "nd_sll": "NXM_NX_ND_SLL",
    "nd_tll": "NXM_NX_ND_TLL",
    "icmpv6_type": "NXM_NX_ICMPV6_TYPE",
}
# set_field targets use OXM-style names in ovs-ofctl text; kinds for printing their values.
SET_FIELDS: dict[str, str] = {
    "vlan_vid": "hex",
    "tun_id": "hex",
    "eth_src": "mac",
    "eth_dst": "mac",
    "arp_op": "int",
    "arp_sha": "mac",
    "arp_tha": "mac",
    "arp_spa": "ipv4",
    "arp_tpa": "ipv4",
    "ipv6_src": "ipv6",
    "ipv6_dst": "ipv6",
    "icmpv6_type": "int",
    "icmpv6_code": "int",
    "nd_reserved": "hex",  # the NA flags word: R, S, O in the top bits
    "nd_options_type": "int",  # 1 = source, 2 = target link-layer address option
    "nd_tll": "mac",
    "nd_sll": "mac",
}

OFPVID_PRESENT = 0x1000
IN_PORT = 0xFFFFFFF8  # OpenFlow's OFPP_IN_PORT


def format_mac(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def parse_mac(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return int("".join(parts), 16)


def format_value(kind: str, value: int) -> str:
    if kind == "mac":
        return format_mac(value)
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(value))
    if kind == "ipv6":
        return str(ipaddress.IPv6Address(value))
    if kind == "hex":
        return hex(value)
    return str(value)


MatchValue = Union[int, tuple[int, int]]  # exact value, or (value, mask)


def format_match(name: str, value: MatchValue) -> str:
    kind = FIELDS[name][0]
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
class SetField:
    """OpenFlow 1.2+ set_field; `field` is an OXM-style name from SET_FIELDS."""

    field: str
    value: int

    def ofctl(self) -> str:
        return f"set_field:{format_value(SET_FIELDS[self.field], self.value)}->{self.field}"


@dataclass(frozen=True, slots=True)
class Move:
    """NXM move (copy bits between fields), e.g. for an ARP responder swapping addresses."""

    src: str  # match/NXM field name from NXM_NAMES
    dst: str

    def ofctl(self) -> str:
        return f"move:{NXM_NAMES[self.src]}[]->{NXM_NAMES[self.dst]}[]"


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
            return f"{NXM_NAMES[name]}[{'' if self.n_bits is None else f'0..{self.n_bits - 1}'}]"

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


Action = Union[Output, Group, PushVlan, PopVlan, SetField, Move, Learn, GotoTable]

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
        match: dict[str, MatchValue] | None = None,
        actions: tuple[Action, ...] | list[Action] = (),
        cookie: int = 0,
        hard_timeout: int = 0,
        idle_timeout: int = 0,
    ) -> "Flow":
        items = tuple(sorted((match or {}).items(), key=_field_rank))
        return Flow(table, priority, items, tuple(actions), cookie, hard_timeout, idle_timeout)

    @property
    def match_dict(self) -> dict[str, MatchValue]:
        return dict(self.match)

    def sort_key(self) -> tuple:
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
    """An OpenFlow group (type all = head-end replication). Reserved for l2pop flooding."""

    group_id: int
    type: str
    buckets: tuple[Bucket, ...] = field(default_factory=tuple)

    def ofctl(self) -> str:
        buckets = ",".join(
            "bucket=actions=" + ",".join(a.ofctl() for a in b.actions) for b in self.buckets
        )
        return f"group_id={self.group_id},type={self.type}" + ("," + buckets if buckets else "")
