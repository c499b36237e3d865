"""`Flow` <-> Ryu OpenFlow 1.3/1.4 messages, both ways, so the live app diffs like with like.

Encode: a compiled `Flow` becomes an `OFPFlowMod` (OXM match, apply-actions + goto-table
instructions, Nicira learn()/move), a `GroupEntry` an `OFPGroupMod`. Decode: the entries of a
switch's flow-stats and group-desc replies become `Flow`/`GroupEntry` values in the *canonical* form
(`canonical_flow`), which is also applied to the compiled program before diffing, so spellings
that mean the same to OVS (`vlan_tci=0x1064/0x1fff` vs `dl_vlan=100`, a full mask vs none) compare
equal.

Every function takes `ofp`/`parser` (a datapath's `ofproto` and `ofproto_parser`, or those of
`ryu.ofproto.ofproto_protocol.ProtocolDesc(version)` offline), so one code path serves OF1.3 and
OF1.4. Field names map to ovs-fields(7) names in `ovsflow.flow`; the NXM names learn() and move use
are the ones `ovs-ofctl` encodes, so a flow installed here dumps exactly like one from `ovs-ofctl`.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any, Iterable

from . import flow as F
from .fields import FIELD_ORDER, FIELDS, OFPVID_PRESENT, OXM_OPENFLOW_BASIC, SET_FIELDS, format_mac, parse_mac
from .flow import Flow, GroupEntry

# --- field tables, derived from the one registry (ovsflow.fields) ---------------------------------
# dl_vlan and vlan_tci both become OXM vlan_vid (13 bits incl. OFPVID_PRESENT): see canonical_match.
MATCH_OXM: dict[str, str] = {f.name: f.ryu_oxm for f in FIELDS.values() if f.match and f.ryu_oxm}
OXM_MATCH = {v: k for k, v in MATCH_OXM.items()}
MAC_FIELDS = {f.name for f in FIELDS.values() if f.kind == "mac"}
IPV4_FIELDS = {f.name for f in FIELDS.values() if f.kind == "ipv4"}
IPV6_FIELDS = {f.name for f in FIELDS.values() if f.kind == "ipv6"}
# set_field targets: set_field spelling -> Ryu OXM name (the ERICOXM extensions have none in Ryu)
SET_OXM: dict[str, str] = {f.set_name: f.ryu_oxm for f in FIELDS.values() if f.set_name and f.ryu_oxm}
OXM_SET = {v: k for k, v in SET_OXM.items()}
# NXM fields (learn specs, move): ovsflow name -> (Ryu NXM name, bit width). These are the NXM
# headers ovs-ofctl puts in NXAST_LEARN / NXAST_REG_MOVE (NXM_OF_IN_PORT is 16 bits, unlike OXM in_port).
NXM: dict[str, tuple[str, int]] = {f.name: (f.ryu_nxm, f.nxm_width) for f in FIELDS.values() if f.ryu_nxm}
# Decoding accepts both the NXM and the OXM spelling OVS may answer with.
NXM_BACK: dict[str, str] = {ryu: name for name, (ryu, _) in NXM.items()}
NXM_BACK.update({f.ryu_oxm: f.name for f in FIELDS.values() if f.ryu_oxm and f.name != "vlan_vid"})

GROUP_TYPES = {"all": 0, "select": 1, "indirect": 2, "ff": 3, "fast_failover": 3}
GROUP_NAMES = {0: "all", 1: "select", 2: "indirect", 3: "ff"}


class EncodeError(ValueError):
    """A Flow uses something this encoder cannot express (a compiler/encoder mismatch)."""


# ------------------------------------------------------------------------------------------------
# values


def _user_value(name: str, value: int) -> Any:
    """Ryu's OXM codecs take MACs and IPs as text."""
    if name in MAC_FIELDS:
        return format_mac(value)
    if name in IPV4_FIELDS:
        return str(ipaddress.IPv4Address(value))
    if name in IPV6_FIELDS:
        return str(ipaddress.IPv6Address(value))
    return value


def _int_value(name: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    if name in MAC_FIELDS:
        return parse_mac(value)
    return int(ipaddress.ip_address(value))


def _full(bits: int) -> int:
    return (1 << bits) - 1


# ------------------------------------------------------------------------------------------------
# canonical form (what a switch answers for a flow)


def canonical_match(match: Iterable[tuple[str, F.MatchValue]]) -> tuple[tuple[str, F.MatchValue], ...]:
    """The match as OVS reports it back: values masked, full masks dropped, VLAN spelled one way.

    VLAN: OXM vlan_vid carries OFPVID_PRESENT (0x1000) + 12-bit VID. An exact present VID is
    `dl_vlan=N`; anything else (no VLAN, masked) is `vlan_tci=V/M` over those 13 bits.
    """
    out: dict[str, F.MatchValue] = {}
    for name, value in match:
        if name in ("dl_vlan", "vlan_tci"):
            if name == "dl_vlan":
                v, m = OFPVID_PRESENT | (value if isinstance(value, int) else value[0]), 0x1FFF
                if isinstance(value, tuple):
                    m = OFPVID_PRESENT | value[1]
            else:
                v, m = (value, 0xFFFF) if isinstance(value, int) else value
                if m & 0xE000:
                    raise EncodeError(f"VLAN PCP matches are not supported: vlan_tci={v:#x}/{m:#x}")
                v, m = v & 0x1FFF, m & 0x1FFF
            v &= m
            if m == 0x1FFF and v & OFPVID_PRESENT:
                out["dl_vlan"] = v & 0xFFF
            elif m:
                out["vlan_tci"] = (v, m)
            continue
        if isinstance(value, tuple):
            v, m = value
            full = _full(FIELDS[name].bits)
            m &= full
            if m == full:
                out[name] = v & full
            elif m:
                out[name] = (v & m, m)
        else:
            out[name] = value
    return tuple(sorted(out.items(), key=lambda kv: FIELD_ORDER.get(kv[0], 99)))


def _canonical_spec(spec: F.LearnSpec) -> F.LearnSpec:
    width = NXM[spec.dst if spec.dst is not None else spec.src][1]  # type: ignore[index]
    n_bits = None if spec.n_bits in (None, width) else spec.n_bits
    src = spec.src
    if spec.kind == "match" and src == spec.dst:
        src = None
    return F.LearnSpec(spec.kind, spec.dst, src, n_bits)


def _canonical_action(a: F.Action) -> F.Action:
    if isinstance(a, F.Learn):
        return F.Learn(a.table, a.priority, a.cookie, tuple(_canonical_spec(s) for s in a.specs),
                       a.hard_timeout, a.idle_timeout)
    return a


def _plainly_canonical(flow: Flow) -> bool:
    """True for the common case canonical_flow would return unchanged: exact values only, no
    vlan_tci, no learn(), fields in FIELD_ORDER order (what Flow.make builds)."""
    last = -1
    for name, value in flow.match:
        pos = FIELD_ORDER.get(name)
        if pos is None or pos <= last or name == "vlan_tci" or type(value) is not int:
            return False
        last = pos
    for a in flow.actions:
        if type(a) is F.Learn:
            return False
    return True


def canonical_flow(flow: Flow) -> Flow:
    """`flow` as it reads back from a switch (see canonical_match)."""
    if _plainly_canonical(flow):
        return flow
    return Flow(flow.table, flow.priority, canonical_match(flow.match),
                tuple(_canonical_action(a) for a in flow.actions),
                flow.cookie, flow.hard_timeout, flow.idle_timeout)


# ------------------------------------------------------------------------------------------------
# encode


def match_kwargs(match: Iterable[tuple[str, F.MatchValue]]) -> dict[str, Any]:
    """Keyword arguments for `parser.OFPMatch(**kw)`."""
    kw: dict[str, Any] = {}
    for name, value in canonical_match(match):
        if name == "dl_vlan":
            kw["vlan_vid"] = OFPVID_PRESENT | value  # type: ignore[operator]
        elif name == "vlan_tci":
            v, m = value  # type: ignore[misc]
            kw["vlan_vid"] = v if m == 0x1FFF else (v, m)
        else:
            oxm = MATCH_OXM.get(name)
            if oxm is None:
                raise EncodeError(f"match field {name!r} has no OXM encoding here")
            if isinstance(value, tuple):
                kw[oxm] = (_user_value(name, value[0]), _user_value(name, value[1]))
            else:
                kw[oxm] = _user_value(name, value)
    return kw


def _nxm_ref(name: str) -> tuple[str, int]:
    try:
        return NXM[name]
    except KeyError:
        raise EncodeError(f"field {name!r} has no NXM encoding for learn()/move") from None


def learn_specs(parser: Any, specs: Iterable[F.LearnSpec]) -> list[Any]:
    out = []
    for s in specs:
        if s.kind == "match":
            dst, width = _nxm_ref(s.dst)  # type: ignore[arg-type]
            n = s.n_bits or width
            src = dst if s.src is None else _nxm_ref(s.src)[0]  # type: ignore[arg-type]
            out.append(parser.NXFlowSpecMatch(src=(src, 0), dst=(dst, 0), n_bits=n))
        elif s.kind == "load":
            dst, width = _nxm_ref(s.dst)  # type: ignore[arg-type]
            n = s.n_bits or width
            src = s.src if isinstance(s.src, int) else (_nxm_ref(s.src)[0], 0)  # type: ignore[arg-type]
            out.append(parser.NXFlowSpecLoad(src=src, dst=(dst, 0), n_bits=n))
        elif s.kind == "output":
            src, width = _nxm_ref(s.src)  # type: ignore[arg-type]
            out.append(parser.NXFlowSpecOutput(src=(src, 0), dst="", n_bits=s.n_bits or width))
        else:
            raise EncodeError(f"unknown learn spec kind {s.kind!r}")
    return out


def action(ofp: Any, parser: Any, a: F.Action) -> Any:
    """One ovsflow action as a Ryu action object (GotoTable is an instruction: see instructions)."""
    if isinstance(a, F.Output):
        return parser.OFPActionOutput(a.port, 0)
    if isinstance(a, F.PushVlan):
        return parser.OFPActionPushVlan(a.ethertype)
    if isinstance(a, F.PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(a, F.SetField):
        kind = SET_FIELDS[a.field].kind
        value: Any = a.value
        if kind == "mac":
            value = format_mac(a.value)
        elif kind in ("ipv4", "ipv6"):
            value = str(ipaddress.ip_address(a.value))
        if a.field not in SET_OXM:  # an OVS extension field Ryu has no codec for
            return raw_action(parser, set_field_bytes(a.field, a.value))
        return parser.OFPActionSetField(**{SET_OXM[a.field]: value})
    if isinstance(a, F.Group):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, F.Move):
        src, sw = _nxm_ref(a.src)
        dst, dw = _nxm_ref(a.dst)
        if sw != dw:
            raise EncodeError(f"move between fields of different widths: {a.ofctl()}")
        return parser.NXActionRegMove(src_field=src, dst_field=dst, n_bits=sw)
    if isinstance(a, F.Learn):
        return parser.NXActionLearn(
            table_id=a.table, specs=learn_specs(parser, a.specs), idle_timeout=a.idle_timeout,
            hard_timeout=a.hard_timeout, priority=a.priority, cookie=a.cookie,
        )
    raise EncodeError(f"action {a!r} cannot be encoded")


def instructions(ofp: Any, parser: Any, actions: Iterable[F.Action]) -> list[Any]:
    """apply-actions for everything but a trailing goto_table, which becomes its instruction."""
    acts = list(actions)
    goto = None
    if acts and isinstance(acts[-1], F.GotoTable):
        goto = acts.pop()
    if any(isinstance(a, F.GotoTable) for a in acts):
        raise EncodeError("goto_table must be the last action")
    out = []
    if acts:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [action(ofp, parser, a) for a in acts]))
    if goto is not None:
        out.append(parser.OFPInstructionGotoTable(goto.table))
    return out


def flow_mod(dp: Any, flow: Flow, command: str = "add") -> Any:
    """An OFPFlowMod for `flow`. command: add | modify (strict: actions only) | delete (strict).

    Deletes are cookie-exact, so ovsflow never removes a flow that is not its own.
    """
    ofp, parser = dp.ofproto, dp.ofproto_parser
    match = parser.OFPMatch(**match_kwargs(flow.match))
    if command == "delete":
        return parser.OFPFlowMod(
            dp, cookie=flow.cookie, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=flow.table,
            command=ofp.OFPFC_DELETE_STRICT, priority=flow.priority, out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY, match=match,
        )
    cmd = {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT}[command]
    return parser.OFPFlowMod(
        dp, cookie=flow.cookie, table_id=flow.table, command=cmd, idle_timeout=flow.idle_timeout,
        hard_timeout=flow.hard_timeout, priority=flow.priority, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=match, instructions=instructions(ofp, parser, flow.actions),
    )


def group_mod(dp: Any, group: GroupEntry, command: str = "add") -> Any:
    """An OFPGroupMod (add | modify | delete)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    cmd = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}[command]
    buckets = []
    if command != "delete":
        buckets = [
            parser.OFPBucket(actions=[action(ofp, parser, a) for a in b.actions]) for b in group.buckets
        ]
    return parser.OFPGroupMod(dp, cmd, GROUP_TYPES[group.type], group.group_id, buckets)


# ------------------------------------------------------------------------------------------------
# decode


def decode_match(match: Any) -> tuple[tuple[str, F.MatchValue], ...]:
    items: list[tuple[str, F.MatchValue]] = []
    for oxm, value in match.items():
        if oxm == "vlan_vid":
            v, m = value if isinstance(value, tuple) else (value, 0x1FFF)
            items.append(("vlan_tci", (v, m)))
            continue
        name = OXM_MATCH.get(oxm)
        if name is None:
            raise EncodeError(f"switch flow matches {oxm!r}, which ovsflow does not use")
        if isinstance(value, tuple):
            items.append((name, (_int_value(name, value[0]), _int_value(name, value[1]))))
        else:
            items.append((name, _int_value(name, value)))
    return canonical_match(items)


def _decode_spec(spec: Any) -> F.LearnSpec:
    kind = {"NXFlowSpecMatch": "match", "NXFlowSpecLoad": "load", "NXFlowSpecOutput": "output"}[
        type(spec).__name__
    ]
    src = NXM_BACK[spec.src[0]] if isinstance(spec.src, tuple) else spec.src
    if kind == "output":
        return _canonical_spec(F.LearnSpec("output", None, src, spec.n_bits))
    dst = NXM_BACK[spec.dst[0]]
    return _canonical_spec(F.LearnSpec(kind, dst, src, spec.n_bits))


def decode_action(ofp: Any, a: Any) -> F.Action:
    t = type(a).__name__
    if t == "OFPActionOutput":
        return F.Output(a.port)
    if t == "OFPActionPushVlan":
        return F.PushVlan(a.ethertype)
    if t == "OFPActionPopVlan":
        return F.PopVlan()
    if t == "OFPActionGroup":
        return F.Group(a.group_id)
    if t == "OFPActionSetField":
        if a.key.startswith("field_"):  # a field Ryu has no codec for: field_<class << 7 | number>
            num = int(a.key[6:])
            name = _SET_NAME[(num >> 7, num & 0x7F)]
            value = a.value  # Ryu gives unknown fields' bytes base64-encoded
            return F.SetField(name, value if isinstance(value, int) else int.from_bytes(base64.b64decode(value), "big"))
        name = OXM_SET[a.key]
        return F.SetField(name, _int_value({"eth_src": "dl_src", "eth_dst": "dl_dst"}.get(name, name), a.value))
    if t == "NXActionRegMove":
        return F.Move(NXM_BACK[a.src_field], NXM_BACK[a.dst_field])
    if t == "NXActionLearn":
        return F.Learn(a.table_id, a.priority, a.cookie, tuple(_decode_spec(s) for s in a.specs),
                       a.hard_timeout, a.idle_timeout)
    raise EncodeError(f"switch flow uses action {t}, which ovsflow does not use")


def decode_instructions(ofp: Any, insts: Iterable[Any]) -> tuple[F.Action, ...]:
    actions: list[F.Action] = []
    goto: F.Action | None = None
    for inst in insts:
        t = type(inst).__name__
        if t == "OFPInstructionActions" and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions += [decode_action(ofp, a) for a in inst.actions]
        elif t == "OFPInstructionGotoTable":
            goto = F.GotoTable(inst.table_id)
        else:
            raise EncodeError(f"switch flow uses instruction {t}, which ovsflow does not use")
    return tuple(actions) + ((goto,) if goto else ())


def flow_from_stats(ofp: Any, stats: Any) -> Flow:
    """One OFPFlowStats entry as a canonical Flow (counters and durations dropped)."""
    return Flow(stats.table_id, stats.priority, decode_match(stats.match),
                decode_instructions(ofp, stats.instructions), stats.cookie,
                stats.hard_timeout, stats.idle_timeout)


def group_from_desc(ofp: Any, desc: Any) -> GroupEntry:
    buckets = tuple(F.Bucket(tuple(decode_action(ofp, a) for a in b.actions)) for b in desc.buckets)
    return GroupEntry(desc.group_id, GROUP_NAMES[desc.type], buckets)


def canonical_group(group: GroupEntry) -> GroupEntry:
    return GroupEntry(group.group_id, "ff" if group.type == "fast_failover" else group.type,
                      tuple(F.Bucket(tuple(b.actions)) for b in group.buckets))


# ------------------------------------------------------------------------------------------------
# bundles


def bundle_ctrl(dp: Any, bundle_id: int, kind: str) -> Any:
    """A bundle control request (kind: open | commit | discard): OF1.4 native, OF1.3 ONF extension."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if hasattr(parser, "OFPBundleCtrlMsg"):
        t = {"open": ofp.OFPBCT_OPEN_REQUEST, "commit": ofp.OFPBCT_COMMIT_REQUEST,
             "discard": ofp.OFPBCT_DISCARD_REQUEST}[kind]
        return parser.OFPBundleCtrlMsg(dp, bundle_id, t, ofp.OFPBF_ATOMIC | ofp.OFPBF_ORDERED, [])
    t = {"open": ofp.ONF_BCT_OPEN_REQUEST, "commit": ofp.ONF_BCT_COMMIT_REQUEST,
         "discard": ofp.ONF_BCT_DISCARD_REQUEST}[kind]
    return parser.ONFBundleCtrlMsg(dp, bundle_id, t, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED, [])


def bundle_add(dp: Any, bundle_id: int, message: Any) -> Any:
    ofp, parser = dp.ofproto, dp.ofproto_parser
    if hasattr(parser, "OFPBundleAddMsg"):
        return parser.OFPBundleAddMsg(dp, bundle_id, ofp.OFPBF_ATOMIC | ofp.OFPBF_ORDERED, message, [])
    return parser.ONFBundleAddMsg(dp, bundle_id, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED, message, [])


def bundle(dp: Any, bundle_id: int, messages: Iterable[Any]) -> list[Any]:
    """open, one add per message, commit: applied all-or-nothing, in this order."""
    return [bundle_ctrl(dp, bundle_id, "open"),
            *(bundle_add(dp, bundle_id, m) for m in messages),
            bundle_ctrl(dp, bundle_id, "commit")]


# ------------------------------------------------------------------------------------------------
# fast path: the same bytes as the Ryu objects above, for bulk programming
#
# Building a Ryu OFPFlowMod per flow costs ~65 us (FACTS.md: ~15k flows/s before any I/O), far
# slower than OVS loads a bundle. Flow-mods differ mostly in a few match values, so this writes the
# fixed layout with struct and OXM TLVs directly, and asks Ryu to serialize each distinct action
# only once (actions are hashable values; a program has few distinct ones). tests/test_ryu_encode.py
# checks the bytes equal Ryu's for every flow the compiler emits.

import struct as _struct  # noqa: E402

_OXM_OFB: dict[str, tuple[int, int]] = {  # ovsflow match name -> (OXM field number, value bytes)
    f.name: f.oxm[1:] for f in FIELDS.values() if f.match and f.oxm and f.oxm[0] == OXM_OPENFLOW_BASIC}
_VLAN_VID = FIELDS["vlan_vid"].oxm[1]  # type: ignore[index]
_SET_HEADER: dict[str, tuple[int, int, int]] = {  # set_field name -> (OXM class, field number, bytes)
    f.set_name: f.oxm for f in FIELDS.values() if f.set_name and f.oxm}


def set_field_bytes(name: str, value: int) -> bytes:
    """An OpenFlow 1.2+ set_field action (type 25) for `name`, padded to 8 bytes."""
    try:
        cls, num, size = _SET_HEADER[name]
    except KeyError:
        raise EncodeError(f"set_field {name!r} has no OXM encoding here") from None
    oxm = ((cls << 16) | (num << 9) | size).to_bytes(4, "big") + value.to_bytes(size, "big")
    length = 4 + len(oxm)
    return (25).to_bytes(2, "big") + (length + -length % 8).to_bytes(2, "big") + oxm + bytes(-length % 8)


class RawAction:
    """An action given as its wire bytes, for Ryu's serializers (they call serialize, read len).
    Ryu insists on its own OFPAction type, so `raw_action` mixes this into the parser's class."""

    def __init__(self, data: bytes) -> None:
        self.data, self.len = data, len(data)
        self.type = int.from_bytes(data[:2], "big")

    def serialize(self, buf: bytearray, offset: int) -> None:
        if len(buf) < offset + self.len:
            buf += bytes(offset + self.len - len(buf))
        buf[offset:offset + self.len] = self.data


_RAW_ACTION_TYPES: dict[Any, type] = {}


def raw_action(parser: Any, data: bytes) -> Any:
    cls = _RAW_ACTION_TYPES.get(parser)
    if cls is None:
        cls = _RAW_ACTION_TYPES[parser] = type("RawAction", (RawAction, parser.OFPAction), {})
    return cls(data)


_OUTPUT = _struct.Struct("!HHIH6x")
_GROUP = _struct.Struct("!HHI")
_POP_VLAN = _struct.pack("!HH4x", 18, 8)
_HEADER = _struct.Struct("!BBHI")
_FLOW_MOD = {0x04: _struct.Struct("!QQBBHHHIIIH2x"), 0x05: _struct.Struct("!QQBBHHHIIIHH")}
_FLOW_MOD_BODY = _FLOW_MOD[0x05]  # same bytes for 0x04 when importance is 0
_BUNDLE_ADD = _struct.Struct("!I2xH")
_ONF_EXP = _struct.Struct("!II")
_KEY_HEAD = _struct.Struct("!HHH")
_COOKIE = _struct.Struct("!Q")
_ANY = 0xFFFFFFFF
_ALL64 = 0xFFFFFFFFFFFFFFFF
_COMMANDS = {"add": 0, "modify": 2, "delete": 4}
_ONF_EXPERIMENTER_ID, _ONF_ET_BUNDLE_ADD = 0x4F4E4600, 2301


def _oxm(field: int, size: int, value: int, mask: int | None) -> bytes:
    if mask is None:
        return ((OXM_OPENFLOW_BASIC << 16) | (field << 9) | size).to_bytes(4, "big") + value.to_bytes(size, "big")
    return (((OXM_OPENFLOW_BASIC << 16) | (field << 9) | 0x100 | (2 * size)).to_bytes(4, "big")
            + value.to_bytes(size, "big") + mask.to_bytes(size, "big"))


def _first(t: tuple) -> Any:
    return t[0]


class FastEncoder:
    """Serialized flow-mods (optionally inside bundle-adds) for one datapath's OpenFlow version."""

    def __init__(self, dp: Any) -> None:
        self.ofp, self.parser = dp.ofproto, dp.ofproto_parser
        self.version = self.ofp.OFP_VERSION
        if self.version not in _FLOW_MOD:
            raise EncodeError(f"fast path speaks OpenFlow 1.3/1.4, not wire version {self.version}")
        self.body = _FLOW_MOD[self.version]
        self._actions: dict[F.Action, bytes] = {}

    def _action(self, a: F.Action) -> bytes:
        t = type(a)
        if t is F.Output:
            return _OUTPUT.pack(0, 16, a.port, 0)  # type: ignore[union-attr]
        if t is F.SetField:
            return set_field_bytes(a.field, a.value)  # type: ignore[union-attr]
        if t is F.PopVlan:
            return _POP_VLAN
        if t is F.Group:
            return _GROUP.pack(22, 8, a.group_id)  # type: ignore[union-attr]
        b = self._actions.get(a)
        if b is None:
            buf = bytearray()
            obj = action(self.ofp, self.parser, a)
            obj.serialize(buf, 0)
            # Ryu may leave trailing pad bytes unwritten; the action's length field counts them.
            b = self._actions[a] = bytes(buf).ljust(obj.len, b"\0")
        return b

    def match(self, match: Iterable[tuple[str, F.MatchValue]], canonical: bool = False) -> bytes:
        """OXM match; pass canonical=True for a match already in canonical_match form (saves time)."""
        oxms = b"".join(self.match_tlvs(match, canonical))
        length = 4 + len(oxms)
        return (1).to_bytes(2, "big") + length.to_bytes(2, "big") + oxms + bytes(-length % 8)

    def flow_key(self, flow: Flow) -> bytes:
        """Bytes that equal `raw_entry_key` of the switch's entry for this (canonical) flow."""
        head = (bytes((flow.table,)) + _KEY_HEAD.pack(flow.priority, flow.idle_timeout, flow.hard_timeout)
                + _COOKIE.pack(flow.cookie))
        return head + b"".join(sorted(self.match_tlvs(flow.match, True))) + self.instructions(flow.actions)

    def match_tlvs(self, match: Iterable[tuple[str, F.MatchValue]], canonical: bool = False) -> list[bytes]:
        """The OXM TLVs of a match, in Ryu's order (by field number)."""
        tlvs = [self._tlv(name, value) for name, value in (match if canonical else canonical_match(match))]
        tlvs.sort(key=_first)
        return [t[1] for t in tlvs]

    def instructions(self, actions: tuple[F.Action, ...]) -> bytes:
        out = b""
        goto = None
        if actions and isinstance(actions[-1], F.GotoTable):
            goto, actions = actions[-1], actions[:-1]
        if actions:
            acts = b"".join(self._action(a) for a in actions)
            out += _struct.pack("!HH4x", 4, 8 + len(acts)) + acts
        if goto is not None:
            out += _struct.pack("!HHB3x", 1, 8, goto.table)  # type: ignore[union-attr]
        return out

    def flow_mod_tail(self, flow: Flow, command: str, canonical: bool = False) -> bytes:
        """A flow-mod without its 8-byte OpenFlow header: the same for OF1.3 and OF1.4 (1.4's
        `importance` is 1.3's pad, both zero), so it can be computed once and sent many times."""
        cmd = _COMMANDS[command]
        if command == "delete":
            body = _FLOW_MOD_BODY.pack(flow.cookie, _ALL64, flow.table, cmd, 0, 0, flow.priority, _ANY,
                                       _ANY, _ANY, 0, 0)
            return body + self.match(flow.match, canonical)
        body = _FLOW_MOD_BODY.pack(flow.cookie, 0, flow.table, cmd, flow.idle_timeout, flow.hard_timeout,
                                   flow.priority, _ANY, _ANY, _ANY, 0, 0)
        return body + self.match(flow.match, canonical) + self.instructions(flow.actions)

    def forget_tail(self, table: int, cookie: int, priority: int, vlan: int, mac: int) -> bytes:
        """A strict DELETE of the entry learn() writes for frames to `mac` in local VLAN `vlan`
        (`table`, `priority`, vlan_tci=VLAN/0x0fff, dl_dst=MAC), only if it carries `cookie`."""
        body = _FLOW_MOD_BODY.pack(cookie, _ALL64, table, 4, 0, 0, priority, _ANY, _ANY, _ANY, 0, 0)
        return body + self.match((("dl_dst", mac), ("vlan_tci", (vlan, 0x0FFF))), True)

    def encode_flows(self, flows: Iterable[Flow]) -> list[tuple[Flow, bytes, bytes]]:
        """(canonical flow, flow_mod_tail(flow, "add"), flow_key(flow)) for many flows, the work shared
        between flows. Compiled flows share action tuples (every l2pop unicast flow to one VTEP
        has the same one) and match items (a network's VLAN), so each is encoded once per call;
        memo keys are object ids, valid because `flows` keeps those objects alive meanwhile."""
        flows = list(flows)
        insts: dict[int, bytes] = {}
        tlv_memo: dict[tuple, tuple[int, bytes]] = {}
        out = []
        body, head, cookie_s = _FLOW_MOD_BODY.pack, _KEY_HEAD.pack, _COOKIE.pack
        for flow in flows:
            if not _plainly_canonical(flow):
                flow = canonical_flow(flow)
            inst = insts.get(id(flow.actions))
            if inst is None:
                inst = insts[id(flow.actions)] = self.instructions(flow.actions)
            tlvs = []
            for item in flow.match:
                t = tlv_memo.get(item)
                if t is None:
                    t = tlv_memo[item] = self._tlv(*item)
                tlvs.append(t)
            tlvs.sort(key=_first)
            oxms = b"".join([t[1] for t in tlvs])
            mlen = 4 + len(oxms)
            tail = (body(flow.cookie, 0, flow.table, 0, flow.idle_timeout, flow.hard_timeout, flow.priority,
                         _ANY, _ANY, _ANY, 0, 0)
                    + (1).to_bytes(2, "big") + mlen.to_bytes(2, "big") + oxms + bytes(-mlen % 8) + inst)
            key = (bytes((flow.table,)) + head(flow.priority, flow.idle_timeout, flow.hard_timeout)
                   + cookie_s(flow.cookie) + b"".join(sorted([t[1] for t in tlvs])) + inst)
            out.append((flow, tail, key))
        return out

    def _tlv(self, name: str, value: F.MatchValue) -> tuple[int, bytes]:
        """(OXM field number, TLV) of one canonical match item."""
        if name == "dl_vlan":
            return (_VLAN_VID, _oxm(_VLAN_VID, 2, OFPVID_PRESENT | value, None))  # type: ignore[operator]
        if name == "vlan_tci":
            v, m = value  # type: ignore[misc]
            return (_VLAN_VID, _oxm(_VLAN_VID, 2, v, None if m == 0x1FFF else m))
        try:
            field, size = _OXM_OFB[name]
        except KeyError:
            raise EncodeError(f"match field {name!r} has no OXM encoding here") from None
        if isinstance(value, tuple):
            return (field, _oxm(field, size, value[0], value[1]))
        return (field, _oxm(field, size, value, None))

    def with_header(self, tail: bytes, xid: int) -> bytes:
        return _HEADER.pack(self.version, 14, 8 + len(tail), xid) + tail

    def flow_mod(self, flow: Flow, command: str, xid: int, canonical: bool = False) -> bytes:
        return self.with_header(self.flow_mod_tail(flow, command, canonical), xid)

    def bundle_add(self, bundle_id: int, inner: bytes, xid: int) -> bytes:
        """Wrap a serialized message (whose xid must be `xid`) in a bundle-add, atomic+ordered."""
        flags = 3
        if self.version == 0x05:
            return _HEADER.pack(0x05, 34, 16 + len(inner), xid) + _BUNDLE_ADD.pack(bundle_id, flags) + inner
        return (_HEADER.pack(0x04, 4, 24 + len(inner), xid) + _ONF_EXP.pack(_ONF_EXPERIMENTER_ID, _ONF_ET_BUNDLE_ADD)
                + _BUNDLE_ADD.pack(bundle_id, flags) + inner)


# ------------------------------------------------------------------------------------------------
# fast path, reading: flow-stats entries straight from the reply bytes
#
# Ryu turns each flow-stats entry into a tree of objects (~150 us a flow: 7 s for 50,000), which
# alone would break the "no-op reconnect < 2 s" goal. `LazyFlowStats` (installed for the flow-stats
# reply by `install_lazy_flow_stats`) keeps the raw entry and parses it with Ryu only if some code
# reads an attribute, so other apps see the usual object; ovsflow reads the bytes with
# `flow_from_raw`, which knows the few actions and fields ovsflow emits and falls back to Ryu's
# parser for anything else (an NX action, an unknown field). Decoded actions are cached by their
# bytes: a program repeats the same few.

_OFB_NAME = {num: name for name, (num, _) in _OXM_OFB.items()}
_SET_NAME = {(cls, num): name for name, (cls, num, _) in _SET_HEADER.items()}
_FULL_BYTES = {n: (1 << (8 * n)) - 1 for n in (1, 2, 4, 6, 8, 16)}
_STATS_HEAD = _struct.Struct("!HBxIIHHH")


class LazyFlowStats:
    """A flow-stats entry that stays bytes until an attribute other than `length` is read."""

    __slots__ = ("buf", "offset", "length", "_parsed")
    ryu_cls: Any = None  # set per OpenFlow version by install_lazy_flow_stats

    @classmethod
    def parser(cls, buf: Any, offset: int) -> "LazyFlowStats":
        obj = cls.__new__(cls)
        obj.buf, obj.offset = buf, offset
        obj.length = int.from_bytes(buf[offset:offset + 2], "big")
        obj._parsed = None
        return obj

    def __getattr__(self, name: str) -> Any:
        parsed = object.__getattribute__(self, "_parsed")
        if parsed is None:
            parsed = self.ryu_cls.parser(self.buf, self.offset)
            object.__setattr__(self, "_parsed", parsed)
        return getattr(parsed, name)


def install_lazy_flow_stats() -> None:
    """Make Ryu's OF1.3/1.4 flow-stats replies carry LazyFlowStats entries (idempotent)."""
    from ryu.ofproto import ofproto_v1_3_parser as p13, ofproto_v1_4_parser as p14

    for mod in (p13, p14):
        reply = mod.OFPFlowStatsReply
        if issubclass(reply.cls_stats_body_cls, LazyFlowStats):
            continue
        reply.cls_stats_body_cls = type("LazyFlowStats", (LazyFlowStats,),
                                        {"__slots__": (), "ryu_cls": reply.cls_stats_body_cls})


def _raw_action(ofp: Any, parser: Any, data: bytes, cache: dict[bytes, F.Action]) -> F.Action:
    a = cache.get(data)
    if a is not None:
        return a
    t = int.from_bytes(data[0:2], "big")
    if t == 0:
        a = F.Output(int.from_bytes(data[4:8], "big"))
    elif t == 17:
        a = F.PushVlan(int.from_bytes(data[4:6], "big"))
    elif t == 18:
        a = F.PopVlan()
    elif t == 22:
        a = F.Group(int.from_bytes(data[4:8], "big"))
    elif t == 25 and not data[6] & 1 and (int.from_bytes(data[4:6], "big"), data[6] >> 1) in _SET_NAME:
        size = data[7]
        a = F.SetField(_SET_NAME[(int.from_bytes(data[4:6], "big"), data[6] >> 1)], int.from_bytes(data[8:8 + size], "big"))
    else:
        a = decode_action(ofp, parser.OFPAction.parser(data, 0))
    cache[data] = a
    return a


def flow_from_raw(ofp: Any, parser: Any, buf: Any, offset: int, cache: dict[bytes, F.Action]) -> Flow:
    """Decode one OF1.3/1.4 flow-stats entry at `offset` into a canonical Flow."""
    length, table, _, _, priority, idle, hard = _STATS_HEAD.unpack_from(buf, offset)
    (cookie,) = _COOKIE.unpack_from(buf, offset + 24)
    end = offset + length
    pos = offset + 48
    mlen = int.from_bytes(buf[pos + 2:pos + 4], "big")
    match: dict[str, F.MatchValue] = {}
    p, mend = pos + 4, pos + mlen
    while p < mend:
        h = int.from_bytes(buf[p:p + 4], "big")
        if h >> 16 != OXM_OPENFLOW_BASIC:
            raise EncodeError(f"switch flow matches OXM class {h >> 16:#x}")
        field, hasmask, n = (h >> 9) & 0x7F, (h >> 8) & 1, h & 0xFF
        size = n // 2 if hasmask else n
        v = int.from_bytes(buf[p + 4:p + 4 + size], "big")
        m = int.from_bytes(buf[p + 4 + size:p + 4 + n], "big") if hasmask else None
        p += 4 + n
        if field == _VLAN_VID:
            if m is None and v & OFPVID_PRESENT:
                match["dl_vlan"] = v & 0xFFF
            else:
                match["vlan_tci"] = (v & (0x1FFF if m is None else m), 0x1FFF if m is None else m)
            continue
        name = _OFB_NAME.get(field)
        if name is None:
            raise EncodeError(f"switch flow matches OXM field {field}, which ovsflow does not use")
        match[name] = v if m is None or m == _FULL_BYTES[size] else (v & m, m)
    pos += mlen + (-mlen % 8)
    actions: list[F.Action] = []
    goto: F.Action | None = None
    while pos < end:
        itype = int.from_bytes(buf[pos:pos + 2], "big")
        ilen = int.from_bytes(buf[pos + 2:pos + 4], "big")
        if itype == 1:
            goto = F.GotoTable(buf[pos + 4])
        elif itype == 4:
            a = pos + 8
            while a < pos + ilen:
                alen = int.from_bytes(buf[a + 2:a + 4], "big")
                actions.append(_raw_action(ofp, parser, bytes(buf[a:a + alen]), cache))
                a += alen
        else:
            raise EncodeError(f"switch flow uses instruction type {itype}, which ovsflow does not use")
        pos += ilen
    items = tuple(sorted(match.items(), key=lambda kv: FIELD_ORDER.get(kv[0], 99)))
    if goto is not None:
        actions.append(goto)
    return Flow(table, priority, items, tuple(actions), cookie, hard, idle)


def flows_from_stats(ofp: Any, parser: Any, entries: Iterable[Any]) -> list[Flow]:
    """Canonical Flows from a flow-stats reply body (LazyFlowStats raw, or Ryu's own objects)."""
    cache: dict[bytes, F.Action] = {}
    out = []
    for e in entries:
        if isinstance(e, LazyFlowStats):
            try:
                out.append(flow_from_raw(ofp, parser, e.buf, e.offset, cache))
                continue
            except (EncodeError, KeyError, IndexError):
                pass  # something ovsflow does not emit: let Ryu's full parser and decoder say what
        out.append(flow_from_stats(ofp, e))
    return out


def raw_entry_key(buf: Any, offset: int) -> tuple[int, bytes]:
    """(cookie, key) of a raw flow-stats entry: table, priority, timeouts, cookie, match TLVs
    (sorted: OVS may order them differently from Ryu) and instruction bytes; counters excluded.
    Equal to `FastEncoder.flow_key` of the flow when OVS answers with the bytes ovsflow sent, which
    lets a no-op reconnect skip decoding (anything else is decoded and diffed field by field)."""
    length = int.from_bytes(buf[offset:offset + 2], "big")
    end = offset + length
    cookie = bytes(buf[offset + 24:offset + 32])
    pos = offset + 48
    mlen = int.from_bytes(buf[pos + 2:pos + 4], "big")
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
