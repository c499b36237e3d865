"""TEST ORACLE ONLY: the same OpenFlow messages built from Ryu 4.34's message objects.

The controller never uses this module. It exists so the tests can check the codec
(`ovsflow.openflow.encode`/`decode`/`bundle`) byte for byte against an independent implementation
(Ryu's serializers and parser), and so `python -m bench codec` can show what building Ryu objects
costs per flow beside the codec. Every function takes a datapath-like `dp` (`ofproto`,
`ofproto_parser`: `ryu.ofproto.ofproto_protocol.ProtocolDesc(version)` offline).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable
from typing import Any

from .. import flow as F
from ..fields import FIELDS, OFPVID_PRESENT, SET_FIELDS, format_mac, parse_mac
from ..flow import Flow, GroupEntry
from . import wire as W
from .encode import EncodeError, canonical_match, canonical_spec, set_field_bytes

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
            load_src: Any = s.src if isinstance(s.src, int) else (_nxm_ref(s.src)[0], 0)  # type: ignore[arg-type]
            out.append(parser.NXFlowSpecLoad(src=load_src, dst=(dst, 0), n_bits=n))
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
    if isinstance(a, F.DecTtl):
        return parser.OFPActionDecNwTtl()
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
        out.append(parser.OFPInstructionGotoTable(goto.table))  # type: ignore[union-attr]
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
        return canonical_spec(F.LearnSpec("output", None, src, spec.n_bits))
    dst = NXM_BACK[spec.dst[0]]
    return canonical_spec(F.LearnSpec(kind, dst, src, spec.n_bits))


def decode_action(ofp: Any, a: Any) -> F.Action:
    t = type(a).__name__
    if t == "OFPActionOutput":
        return F.Output(a.port)
    if t == "OFPActionPushVlan":
        return F.PushVlan(a.ethertype)
    if t == "OFPActionPopVlan":
        return F.PopVlan()
    if t == "OFPActionDecNwTtl":
        return F.DecTtl()
    if t == "OFPActionGroup":
        return F.Group(a.group_id)
    if t == "OFPActionSetField":
        if a.key.startswith("field_"):  # a field Ryu has no codec for: field_<class << 7 | number>
            num = int(a.key[6:])
            name = W.SET_NAME[(num >> 7, num & 0x7F)]
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

