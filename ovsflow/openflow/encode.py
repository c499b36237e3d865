"""`Flow` / `GroupEntry` -> OpenFlow 1.3/1.4 bytes, and the canonical form diffs compare in.

Canonical form: a flow as a switch reports it back (values masked, full masks dropped, the VLAN
spelled one way, learn() specs without redundant parts), so spellings that mean the same to OVS
(`vlan_tci=0x1064/0x1fff` vs `dl_vlan=100`) compare equal. Compiled programs are put in this form
before diffing, and the decoder produces it.

The encoder writes the fixed layouts with struct and OXM TLVs directly and caches what repeats:
a program has few distinct actions (every l2pop unicast flow to one VTEP has the same ones).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .. import flow as F
from ..flow import Flow, GroupEntry
from . import wire as W


class EncodeError(ValueError):
    """A value uses something this codec cannot express (a compiler/codec mismatch, or a flow
    on a switch that ovsflow did not write)."""


OFP13, OFP14 = 0x04, 0x05
HEADER = struct.Struct("!BBHI")
FLOW_MOD_BODY = struct.Struct("!QQBBHHHIIIHH")  # OF1.4; OF1.3's trailing pad is 1.4's importance=0
KEY_HEAD = struct.Struct("!HHH")
COOKIE = struct.Struct("!Q")
ANY = 0xFFFFFFFF
ALL64 = 0xFFFFFFFFFFFFFFFF
COMMANDS = {"add": 0, "modify": 2, "delete": 4}  # OFPFC_ADD, OFPFC_MODIFY_STRICT, OFPFC_DELETE_STRICT
GROUP_COMMANDS = {"add": 0, "modify": 1, "delete": 2}
GROUP_TYPES = {"all": 0, "select": 1, "indirect": 2, "ff": 3, "fast_failover": 3}
T_ECHO_REQUEST, T_FLOW_MOD, T_GROUP_MOD, T_MULTIPART_REQUEST, T_BARRIER_REQUEST = 2, 14, 15, 18, 20
MP_FLOW, MP_GROUP_DESC = 1, 7
NX_VENDOR = 0x00002320
_OUTPUT = struct.Struct("!HHIH6x")
_GROUP = struct.Struct("!HHI")
_PUSH_VLAN = struct.Struct("!HHH2x")
_POP_VLAN = struct.pack("!HH4x", 18, 8)
_DEC_NW_TTL = struct.pack("!HH4x", 24, 8)
_NX_HEAD = struct.Struct("!HHIH")
_REG_MOVE = struct.Struct("!HHHII")
_LEARN = struct.Struct("!HHHQHBxHH")
_BUCKET = struct.Struct("!HHII4x")
_FLOW_STATS_REQ = struct.Struct("!HH4xB3xII4xQQ")


def header(version: int, msg_type: int, body: bytes, xid: int) -> bytes:
    return HEADER.pack(version, msg_type, 8 + len(body), xid) + body


# ------------------------------------------------------------------------------------------------
# canonical form


def _full(bits: int) -> int:
    return (1 << bits) - 1


def canonical_match(match: Iterable[tuple[str, F.MatchValue]]) -> tuple[tuple[str, F.MatchValue], ...]:
    """The match as OVS reports it back: values masked, full masks dropped, VLAN spelled one way.

    VLAN: OXM vlan_vid carries OFPVID_PRESENT (0x1000) + 12-bit VID. An exact present VID is
    `dl_vlan=N`; anything else (no VLAN, masked) is `vlan_tci=V/M` over those 13 bits.
    """
    out: dict[str, F.MatchValue] = {}
    for name, value in match:
        if name in ("dl_vlan", "vlan_tci"):
            if name == "dl_vlan":
                v, m = W.OFPVID_PRESENT | (value if isinstance(value, int) else value[0]), 0x1FFF
                if isinstance(value, tuple):
                    m = W.OFPVID_PRESENT | value[1]
            else:
                v, m = (value, 0xFFFF) if isinstance(value, int) else value
                if m & 0xE000:
                    raise EncodeError(f"VLAN PCP matches are not supported: vlan_tci={v:#x}/{m:#x}")
                v, m = v & 0x1FFF, m & 0x1FFF
            v &= m
            if m == 0x1FFF and v & W.OFPVID_PRESENT:
                out["dl_vlan"] = v & 0xFFF
            elif m:
                out["vlan_tci"] = (v, m)
            continue
        if isinstance(value, tuple):
            v, m = value
            full = _full(W.FIELD_BITS[name])
            m &= full
            if m == full:
                out[name] = v & full
            elif m:
                out[name] = (v & m, m)
        else:
            out[name] = value
    return tuple(sorted(out.items(), key=lambda kv: W.FIELD_ORDER.get(kv[0], 99)))


def canonical_spec(spec: F.LearnSpec) -> F.LearnSpec:
    ref = spec.dst if spec.dst is not None else spec.src
    if not isinstance(ref, str) or ref not in W.NXM_WIDTH:
        raise EncodeError(f"learn spec {spec!r} names no NXM field")
    n_bits = None if spec.n_bits in (None, W.NXM_WIDTH[ref]) else spec.n_bits
    src = None if spec.kind == "match" and spec.src == spec.dst else spec.src
    return F.LearnSpec(spec.kind, spec.dst, src, n_bits)


def _canonical_action(a: F.Action) -> F.Action:
    if isinstance(a, F.Learn):
        return F.Learn(a.table, a.priority, a.cookie, tuple(canonical_spec(s) for s in a.specs),
                       a.hard_timeout, a.idle_timeout)
    return a


def plainly_canonical(flow: Flow) -> bool:
    """True for the common case canonical_flow returns unchanged: exact values only, no vlan_tci,
    no learn(), fields in canonical order (what Flow.make builds)."""
    last = -1
    for name, value in flow.match:
        pos = W.FIELD_ORDER.get(name)
        if pos is None or pos <= last or name == "vlan_tci" or type(value) is not int:
            return False
        last = pos
    return not any(type(a) is F.Learn for a in flow.actions)


def canonical_flow(flow: Flow) -> Flow:
    """`flow` as it reads back from a switch (see canonical_match)."""
    if plainly_canonical(flow):
        return flow
    return Flow(flow.table, flow.priority, canonical_match(flow.match),
                tuple(_canonical_action(a) for a in flow.actions),
                flow.cookie, flow.hard_timeout, flow.idle_timeout)


def canonical_group(group: GroupEntry) -> GroupEntry:
    return GroupEntry(group.group_id, "ff" if group.type == "fast_failover" else group.type,
                      tuple(F.Bucket(tuple(b.actions)) for b in group.buckets))


# ------------------------------------------------------------------------------------------------
# actions


def oxm_tlv(cls: int, num: int, size: int, value: int, mask: int | None = None) -> bytes:
    if mask is None:
        return ((cls << 16) | (num << 9) | size).to_bytes(4, "big") + value.to_bytes(size, "big")
    return (((cls << 16) | (num << 9) | 0x100 | (2 * size)).to_bytes(4, "big")
            + value.to_bytes(size, "big") + mask.to_bytes(size, "big"))


def set_field_bytes(name: str, value: int) -> bytes:
    """An OpenFlow 1.2+ set_field action (type 25) for `name`, padded to 8 bytes."""
    try:
        cls, num, size = W.SET_OXM[name]
    except KeyError:
        raise EncodeError(f"set_field {name!r} has no OXM encoding here") from None
    oxm = oxm_tlv(cls, num, size, value)
    length = 4 + len(oxm)
    return (25).to_bytes(2, "big") + (length + -length % 8).to_bytes(2, "big") + oxm + bytes(-length % 8)


def _nxm(name: str | None) -> int:
    try:
        return W.nxm_header(name)  # type: ignore[arg-type]
    except KeyError:
        raise EncodeError(f"field {name!r} has no NXM encoding for learn()/move") from None


def _nx_action(subtype: int, body: bytes) -> bytes:
    length = 10 + len(body)
    return _NX_HEAD.pack(0xFFFF, length + -length % 8, NX_VENDOR, subtype) + body + bytes(-length % 8)


def move_bytes(a: F.Move) -> bytes:
    """NXAST_REG_MOVE (whole fields of equal width)."""
    width = W.NXM_WIDTH.get(a.src)
    if width is None or width != W.NXM_WIDTH.get(a.dst):
        raise EncodeError(f"move between fields of different or unknown widths: {a.ofctl()}")
    return _nx_action(6, _REG_MOVE.pack(width, 0, 0, _nxm(a.src), _nxm(a.dst)))


def _spec_bytes(s: F.LearnSpec) -> bytes:
    dst_type = {"match": 0, "load": 1, "output": 2}.get(s.kind)
    if dst_type is None:
        raise EncodeError(f"unknown learn spec kind {s.kind!r}")
    ref = s.src if s.kind == "output" else s.dst
    n = s.n_bits or W.NXM_WIDTH.get(ref, 0)  # type: ignore[arg-type]
    if s.kind == "output":
        return ((0 << 13) | (2 << 11) | n).to_bytes(2, "big") + _nxm(s.src).to_bytes(4, "big") + bytes(2)  # type: ignore[arg-type]
    src = s.dst if s.src is None else s.src
    if isinstance(src, int):
        head = (1 << 13) | (dst_type << 11) | n
        out = head.to_bytes(2, "big") + src.to_bytes(2 * ((n + 15) // 16), "big")
    else:
        out = ((dst_type << 11) | n).to_bytes(2, "big") + _nxm(src).to_bytes(4, "big") + bytes(2)
    return out + _nxm(s.dst).to_bytes(4, "big") + bytes(2)


def learn_bytes(a: F.Learn) -> bytes:
    """NXAST_LEARN with its flow_mod_specs."""
    body = _LEARN.pack(a.idle_timeout, a.hard_timeout, a.priority, a.cookie, 0, a.table, 0, 0)
    return _nx_action(16, body + b"".join(_spec_bytes(s) for s in a.specs))


def action_bytes(a: F.Action) -> bytes:
    """One action (GotoTable is an instruction: see Encoder.instructions)."""
    if isinstance(a, F.Output):
        return _OUTPUT.pack(0, 16, a.port, 0)
    if isinstance(a, F.SetField):
        return set_field_bytes(a.field, a.value)
    if isinstance(a, F.PopVlan):
        return _POP_VLAN
    if isinstance(a, F.DecTtl):
        return _DEC_NW_TTL
    if isinstance(a, F.Group):
        return _GROUP.pack(22, 8, a.group_id)
    if isinstance(a, F.PushVlan):
        return _PUSH_VLAN.pack(17, 8, a.ethertype)
    if isinstance(a, F.Move):
        return move_bytes(a)
    if isinstance(a, F.Learn):
        return learn_bytes(a)
    raise EncodeError(f"action {a!r} cannot be encoded")


# ------------------------------------------------------------------------------------------------
# flow-mods


def _first(t: tuple[int, bytes]) -> int:
    return t[0]


class Encoder:
    """Serialized flow-mods and group-mods for one OpenFlow version (1.3 or 1.4)."""

    def __init__(self, version: int = OFP14) -> None:
        if version not in (OFP13, OFP14):
            raise EncodeError(f"ovsflow speaks OpenFlow 1.3/1.4, not wire version {version}")
        self.version = version
        self._actions: dict[F.Action, bytes] = {}

    def action(self, a: F.Action) -> bytes:
        b = self._actions.get(a)
        if b is None:
            b = self._actions[a] = action_bytes(a)
        return b

    def tlv(self, name: str, value: F.MatchValue) -> tuple[int, bytes]:
        """(sort key, TLV) of one canonical match item: OpenFlow-basic fields by field number, then
        other classes (nw_ttl is NXM_1)."""
        if name == "dl_vlan":
            return (W.VLAN_VID, oxm_tlv(W.OXM_BASIC, W.VLAN_VID, 2, W.OFPVID_PRESENT | value))  # type: ignore[operator]
        if name == "vlan_tci":
            v, m = value  # type: ignore[misc]
            return (W.VLAN_VID, oxm_tlv(W.OXM_BASIC, W.VLAN_VID, 2, v, None if m == 0x1FFF else m))
        try:
            cls, num, size = W.MATCH_OXM[name]
        except KeyError:
            raise EncodeError(f"match field {name!r} has no OXM encoding here") from None
        order = num if cls == W.OXM_BASIC else (cls << 16) | num
        if isinstance(value, tuple):
            return (order, oxm_tlv(cls, num, size, value[0], value[1]))
        return (order, oxm_tlv(cls, num, size, value))

    def match_tlvs(self, match: Iterable[tuple[str, F.MatchValue]], canonical: bool = False) -> list[bytes]:
        """The OXM TLVs of a match, by field number (the order Ryu and OVS write them in)."""
        tlvs = [self.tlv(name, value) for name, value in (match if canonical else canonical_match(match))]
        tlvs.sort(key=_first)
        return [t[1] for t in tlvs]

    def match(self, match: Iterable[tuple[str, F.MatchValue]], canonical: bool = False) -> bytes:
        """An ofp_match (OXM), padded; canonical=True for a match already in canonical form."""
        oxms = b"".join(self.match_tlvs(match, canonical))
        length = 4 + len(oxms)
        return (1).to_bytes(2, "big") + length.to_bytes(2, "big") + oxms + bytes(-length % 8)

    def instructions(self, actions: tuple[F.Action, ...]) -> bytes:
        """apply-actions for everything but a trailing goto_table, which is its own instruction."""
        out = b""
        goto = None
        if actions and isinstance(actions[-1], F.GotoTable):
            goto, actions = actions[-1], actions[:-1]
        if any(isinstance(a, F.GotoTable) for a in actions):
            raise EncodeError("goto_table must be the last action")
        if actions:
            acts = b"".join(self.action(a) for a in actions)
            out += struct.pack("!HH4x", 4, 8 + len(acts)) + acts
        if goto is not None:
            out += struct.pack("!HHB3x", 1, 8, goto.table)
        return out

    def flow_key(self, flow: Flow) -> bytes:
        """Bytes equal to `decode.entry_key` of the switch's entry for this (canonical) flow."""
        head = (bytes((flow.table,)) + KEY_HEAD.pack(flow.priority, flow.idle_timeout, flow.hard_timeout)
                + COOKIE.pack(flow.cookie))
        return head + b"".join(sorted(self.match_tlvs(flow.match, True))) + self.instructions(flow.actions)

    def flow_mod_tail(self, flow: Flow, command: str, canonical: bool = False) -> bytes:
        """A flow-mod without its 8-byte header: the same for OF1.3 and OF1.4, so it can be
        computed once and sent to either. command: add | modify (strict: actions only) | delete
        (strict and cookie-exact: ovsflow never removes a flow that is not its own)."""
        cmd = COMMANDS[command]
        if command == "delete":
            body = FLOW_MOD_BODY.pack(flow.cookie, ALL64, flow.table, cmd, 0, 0, flow.priority, ANY, ANY, ANY, 0, 0)
            return body + self.match(flow.match, canonical)
        body = FLOW_MOD_BODY.pack(flow.cookie, 0, flow.table, cmd, flow.idle_timeout, flow.hard_timeout,
                                  flow.priority, ANY, ANY, ANY, 0, 0)
        return body + self.match(flow.match, canonical) + self.instructions(flow.actions)

    def forget_tail(self, table: int, cookie: int, priority: int, vlan: int, mac: int) -> bytes:
        """A strict DELETE of the entry learn() writes for frames to `mac` in local VLAN `vlan`
        (`table`, `priority`, vlan_tci=VLAN/0x0fff, dl_dst=MAC), only if it carries `cookie`."""
        body = FLOW_MOD_BODY.pack(cookie, ALL64, table, 4, 0, 0, priority, ANY, ANY, ANY, 0, 0)
        return body + self.match((("dl_dst", mac), ("vlan_tci", (vlan, 0x0FFF))), True)

    def with_header(self, tail: bytes, xid: int) -> bytes:
        return HEADER.pack(self.version, T_FLOW_MOD, 8 + len(tail), xid) + tail

    def flow_mod(self, flow: Flow, command: str, xid: int, canonical: bool = False) -> bytes:
        return self.with_header(self.flow_mod_tail(flow, command, canonical), xid)

    def encode_flows(self, flows: Iterable[Flow]) -> list[tuple[Flow, bytes, bytes]]:
        """(canonical flow, flow_mod_tail(flow, "add"), flow_key(flow)) for many flows, the work
        shared between them: compiled flows share action tuples and match items (a network's
        VLAN), so each is encoded once per call. Memo keys are object ids, valid because `flows`
        keeps those objects alive meanwhile."""
        flows = list(flows)
        insts: dict[int, bytes] = {}
        tlv_memo: dict[tuple[str, F.MatchValue], tuple[int, bytes]] = {}
        out = []
        body, head, cookie_s = FLOW_MOD_BODY.pack, KEY_HEAD.pack, COOKIE.pack
        for flow in flows:
            if not plainly_canonical(flow):
                flow = canonical_flow(flow)
            inst = insts.get(id(flow.actions))
            if inst is None:
                inst = insts[id(flow.actions)] = self.instructions(flow.actions)
            tlvs = []
            for item in flow.match:
                t = tlv_memo.get(item)
                if t is None:
                    t = tlv_memo[item] = self.tlv(*item)
                tlvs.append(t)
            tlvs.sort(key=_first)
            oxms = b"".join([t[1] for t in tlvs])
            mlen = 4 + len(oxms)
            tail = (body(flow.cookie, 0, flow.table, 0, flow.idle_timeout, flow.hard_timeout, flow.priority,
                         ANY, ANY, ANY, 0, 0)
                    + (1).to_bytes(2, "big") + mlen.to_bytes(2, "big") + oxms + bytes(-mlen % 8) + inst)
            key = (bytes((flow.table,)) + head(flow.priority, flow.idle_timeout, flow.hard_timeout)
                   + cookie_s(flow.cookie) + b"".join(sorted([t[1] for t in tlvs])) + inst)
            out.append((flow, tail, key))
        return out

    def group_mod(self, group: GroupEntry, command: str, xid: int) -> bytes:
        """OFPT_GROUP_MOD (add | modify | delete); buckets watch nothing, weigh 0."""
        buckets = b""
        if command != "delete":
            for b in group.buckets:
                acts = b"".join(self.action(a) for a in b.actions)
                buckets += _BUCKET.pack(16 + len(acts), 0, ANY, ANY) + acts
        body = struct.pack("!HBxI", GROUP_COMMANDS[command], GROUP_TYPES[group.type], group.group_id) + buckets
        return header(self.version, T_GROUP_MOD, body, xid)


# ------------------------------------------------------------------------------------------------
# requests


def flow_stats_request(version: int, xid: int, cookie: int = 0, cookie_mask: int = 0) -> bytes:
    """All tables' flows whose cookie matches `cookie` under `cookie_mask`."""
    body = _FLOW_STATS_REQ.pack(MP_FLOW, 0, 0xFF, ANY, ANY, cookie, cookie_mask) + struct.pack("!HH4x", 1, 4)
    return header(version, T_MULTIPART_REQUEST, body, xid)


def group_desc_request(version: int, xid: int) -> bytes:
    return header(version, T_MULTIPART_REQUEST, struct.pack("!HH4x", MP_GROUP_DESC, 0), xid)


def barrier_request(version: int, xid: int) -> bytes:
    return header(version, T_BARRIER_REQUEST, b"", xid)


def echo_request(version: int, xid: int, data: bytes = b"") -> bytes:
    return header(version, T_ECHO_REQUEST, data, xid)
