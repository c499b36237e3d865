"""OpenFlow 1.3/1.4 bytes -> `Flow` / `GroupEntry` values in canonical form (see encode).

It knows exactly the matches and actions ovsflow writes and refuses anything else (EncodeError):
a flow with the ovsflow cookie that ovsflow cannot read was written by someone else, and the
controller must not guess what it means.

`entry_key` gives a flow-stats entry's identity bytes without decoding it: equal to
`Encoder.flow_key` of the flow when the switch holds what ovsflow sent, so reading back a switch
that is in sync decodes nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .. import flow as F
from ..flow import Flow, GroupEntry
from . import wire as W
from .encode import COOKIE, HEADER, NX_VENDOR, EncodeError, canonical_spec

T_ERROR, T_MULTIPART_REPLY = 1, 19
MORE = 1  # OFPMPF_REPLY_MORE
GROUP_NAMES = {0: "all", 1: "select", 2: "indirect", 3: "ff"}
_STATS_HEAD = struct.Struct("!HBxIIHHH")
_FLOW_MOD_HEAD = struct.Struct("!QQBBHHH")
_FULL = {n: (1 << (8 * n)) - 1 for n in (1, 2, 4, 6, 8, 16)}
_COMMANDS = {0: "add", 1: "modify-loose", 2: "modify", 3: "delete-loose", 4: "delete"}


def u16(buf: bytes, pos: int) -> int:
    return int.from_bytes(buf[pos:pos + 2], "big")


def u32(buf: bytes, pos: int) -> int:
    return int.from_bytes(buf[pos:pos + 4], "big")


# ------------------------------------------------------------------------------------------------
# messages


def message_header(msg: bytes) -> tuple[int, int, int, int]:
    """(version, type, length, xid)."""
    version, msg_type, length, xid = HEADER.unpack_from(msg, 0)
    return version, msg_type, length, xid


def multipart(msg: bytes) -> tuple[int, bool, Iterator[int]]:
    """(multipart type, more to come, offsets of the body's entries) of a multipart reply."""
    mp_type, flags = struct.unpack_from("!HH", msg, 8)

    def offsets() -> Iterator[int]:
        off, end = 16, len(msg)
        while off < end:
            yield off
            off += u16(msg, off)

    return mp_type, bool(flags & MORE), offsets()


def error(msg: bytes) -> tuple[int, int]:
    """(type, code) of an OFPT_ERROR message."""
    etype, code = struct.unpack_from("!HH", msg, 8)
    return etype, code


# ------------------------------------------------------------------------------------------------
# flows


def entry_key(buf: bytes, offset: int) -> tuple[int, bytes]:
    """(cookie, key) of a flow-stats entry: table, priority, timeouts, cookie, match TLVs (sorted:
    a switch may order them differently) and instruction bytes; counters excluded."""
    end = offset + u16(buf, offset)
    cookie = bytes(buf[offset + 24:offset + 32])
    pos = offset + 48
    mlen = u16(buf, pos + 2)
    tlvs = []
    p, mend = pos + 4, pos + mlen
    while p < mend:
        n = buf[p + 3]
        tlvs.append(bytes(buf[p:p + 4 + n]))
        p += 4 + n
    tlvs.sort()
    pos += mlen + (-mlen % 8)
    key = bytes(buf[offset + 2:offset + 3]) + bytes(buf[offset + 12:offset + 18]) + cookie + b"".join(tlvs) + bytes(buf[pos:end])
    return int.from_bytes(cookie, "big"), key


def _match(buf: bytes, pos: int) -> tuple[tuple[tuple[str, F.MatchValue], ...], int]:
    """The canonical match of the ofp_match at `pos`, and where the instructions start."""
    mlen = u16(buf, pos + 2)
    match: dict[str, F.MatchValue] = {}
    p, mend = pos + 4, pos + mlen
    while p < mend:
        h = u32(buf, p)
        cls, num, hasmask, n = h >> 16, (h >> 9) & 0x7F, (h >> 8) & 1, h & 0xFF
        size = n // 2 if hasmask else n
        v = int.from_bytes(buf[p + 4:p + 4 + size], "big")
        m = int.from_bytes(buf[p + 4 + size:p + 4 + n], "big") if hasmask else None
        p += 4 + n
        if cls == W.OXM_BASIC and num == W.VLAN_VID:
            if m is None and v & W.OFPVID_PRESENT:
                match["dl_vlan"] = v & 0xFFF
            else:
                mask = 0x1FFF if m is None else m
                match["vlan_tci"] = (v & mask, mask)
            continue
        name = W.OXM_MATCH_NAME.get((cls, num))
        if name is None:
            raise EncodeError(f"flow matches OXM class {cls:#x} field {num}, which ovsflow does not use")
        match[name] = v if m is None or m == _FULL[size] else (v & m, m)
    items = tuple(sorted(match.items(), key=lambda kv: W.FIELD_ORDER.get(kv[0], 99)))
    return items, pos + mlen + (-mlen % 8)


def _instructions(buf: bytes, pos: int, end: int, cache: dict[bytes, F.Action]) -> tuple[F.Action, ...]:
    actions: list[F.Action] = []
    goto: F.Action | None = None
    while pos < end:
        itype, ilen = u16(buf, pos), u16(buf, pos + 2)
        if itype == 1:
            goto = F.GotoTable(buf[pos + 4])
        elif itype == 4:
            actions += actions_at(buf, pos + 8, pos + ilen, cache)
        else:
            raise EncodeError(f"flow uses instruction type {itype}, which ovsflow does not use")
        pos += ilen
    return tuple(actions) + ((goto,) if goto is not None else ())


def flow_from_entry(buf: bytes, offset: int, cache: dict[bytes, F.Action] | None = None) -> Flow:
    """One flow-stats entry as a canonical Flow (counters and durations dropped). `cache` maps
    action bytes to actions across calls: a program repeats the same few."""
    length, table, _, _, priority, idle, hard = _STATS_HEAD.unpack_from(buf, offset)
    (cookie,) = COOKIE.unpack_from(buf, offset + 24)
    match, pos = _match(buf, offset + 48)
    actions = _instructions(buf, pos, offset + length, {} if cache is None else cache)
    return Flow(table, priority, match, actions, cookie, hard, idle)


def flows_from_reply(msg: bytes, cache: dict[bytes, F.Action] | None = None) -> list[Flow]:
    return [flow_from_entry(msg, off, cache) for off in multipart(msg)[2]]


def flow_mod(msg: bytes) -> tuple[str, Flow, int]:
    """(command, canonical Flow, cookie mask) of an OFPT_FLOW_MOD; for test switches and tools."""
    cookie, cookie_mask, table, command, idle, hard, priority = _FLOW_MOD_HEAD.unpack_from(msg, 8)
    match, pos = _match(msg, 48)
    actions = _instructions(msg, pos, u16(msg, 2), {})
    return _COMMANDS[command], Flow(table, priority, match, actions, cookie, hard, idle), cookie_mask


# ------------------------------------------------------------------------------------------------
# actions


def _nxm_name(header: int) -> str:
    name = W.NXM_BY_HEADER.get(header)
    if name is None:
        raise EncodeError(f"NXM/OXM header {header:#x} names no field ovsflow uses")
    return name


def _learn(data: bytes) -> F.Learn:
    idle, hard, priority, cookie, flags, table, fin_idle, fin_hard = struct.unpack_from("!HHHQHBxHH", data, 10)
    if flags or fin_idle or fin_hard:
        raise EncodeError("learn() with flags or FIN timeouts, which ovsflow does not use")
    specs: list[F.LearnSpec] = []
    p = 32
    while p + 2 <= len(data):
        head = u16(data, p)
        n = head & 0x7FF
        if n == 0:
            break
        src_imm, dst_type = head >> 13 & 1, head >> 11 & 3
        p += 2
        src: str | int
        if src_imm:
            size = 2 * ((n + 15) // 16)
            src = int.from_bytes(data[p:p + size], "big")
            p += size
        else:
            if u16(data, p + 4):
                raise EncodeError("learn() spec with a bit offset, which ovsflow does not use")
            src = _nxm_name(u32(data, p))
            p += 6
        if dst_type == 2:
            specs.append(canonical_spec(F.LearnSpec("output", None, src, n)))
            continue
        if u16(data, p + 4):
            raise EncodeError("learn() spec with a bit offset, which ovsflow does not use")
        dst = _nxm_name(u32(data, p))
        p += 6
        specs.append(canonical_spec(F.LearnSpec("match" if dst_type == 0 else "load", dst, src, n)))
    return F.Learn(table, priority, cookie, tuple(specs), hard, idle)


def _move(data: bytes) -> F.Move:
    n_bits, src_ofs, dst_ofs, src, dst = struct.unpack_from("!HHHII", data, 10)
    a = F.Move(_nxm_name(src), _nxm_name(dst))
    if src_ofs or dst_ofs or n_bits != W.NXM_WIDTH.get(a.src):
        raise EncodeError("move of part of a field, which ovsflow does not use")
    return a


def action(data: bytes) -> F.Action:
    """One action from its bytes."""
    t = u16(data, 0)
    if t == 0:
        return F.Output(u32(data, 4))
    if t == 17:
        return F.PushVlan(u16(data, 4))
    if t == 18:
        return F.PopVlan()
    if t == 22:
        return F.Group(u32(data, 4))
    if t == 24:
        return F.DecTtl()
    if t == 25:
        h = u32(data, 4)
        name = W.SET_NAME.get((h >> 16, (h >> 9) & 0x7F))
        if name is None or h & 0x100:
            raise EncodeError(f"set_field with OXM header {h:#x}, which ovsflow does not use")
        return F.SetField(name, int.from_bytes(data[8:8 + (h & 0xFF)], "big"))
    if t == 0xFFFF and u32(data, 4) == NX_VENDOR:
        subtype = u16(data, 8)
        if subtype == 6:
            return _move(data)
        if subtype == 16:
            return _learn(data)
    raise EncodeError(f"action type {t:#x}, which ovsflow does not use")


def actions_at(buf: bytes, pos: int, end: int, cache: dict[bytes, F.Action]) -> list[F.Action]:
    out = []
    while pos < end:
        alen = u16(buf, pos + 2)
        if alen < 8:
            raise EncodeError(f"action of length {alen}")
        data = bytes(buf[pos:pos + alen])
        a = cache.get(data)
        if a is None:
            a = cache[data] = action(data)
        out.append(a)
        pos += alen
    return out


# ------------------------------------------------------------------------------------------------
# groups


def groups_from_reply(msg: bytes) -> list[GroupEntry]:
    """The groups of a group-desc reply."""
    out = []
    cache: dict[bytes, F.Action] = {}
    for off in multipart(msg)[2]:
        length, gtype, group_id = struct.unpack_from("!HBxI", msg, off)
        buckets = []
        pos, end = off + 8, off + length
        while pos < end:
            blen = u16(msg, pos)
            buckets.append(F.Bucket(tuple(actions_at(msg, pos + 16, pos + blen, cache))))
            pos += blen
        out.append(GroupEntry(group_id, GROUP_NAMES[gtype], tuple(buckets)))
    return out
