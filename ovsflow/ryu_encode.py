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

import ipaddress
from typing import Any, Iterable

from . import flow as F
from .flow import Flow, GroupEntry

# --- match fields: ovsflow name -> Ryu OXM name ------------------------------------------------
# dl_vlan and vlan_tci both become OXM vlan_vid (13 bits incl. OFPVID_PRESENT): see _vlan_to_oxm.
MATCH_OXM: dict[str, str] = {
    "in_port": "in_port",
    "tun_id": "tunnel_id",
    "dl_src": "eth_src",
    "dl_dst": "eth_dst",
    "dl_type": "eth_type",
    "nw_proto": "ip_proto",
    "arp_op": "arp_op",
    "arp_spa": "arp_spa",
    "arp_tpa": "arp_tpa",
    "arp_sha": "arp_sha",
    "arp_tha": "arp_tha",
    "ipv6_src": "ipv6_src",
    "ipv6_dst": "ipv6_dst",
    "icmpv6_type": "icmpv6_type",
    "nd_target": "ipv6_nd_target",
    "nd_sll": "ipv6_nd_sll",
    "nd_tll": "ipv6_nd_tll",
}
OXM_MATCH = {v: k for k, v in MATCH_OXM.items()}
FIELD_BITS: dict[str, int] = {
    "in_port": 32, "tun_id": 64, "dl_vlan": 12, "vlan_tci": 16, "dl_src": 48, "dl_dst": 48,
    "dl_type": 16, "nw_proto": 8, "arp_op": 16, "arp_spa": 32, "arp_tpa": 32, "arp_sha": 48,
    "arp_tha": 48, "ipv6_src": 128, "ipv6_dst": 128, "icmpv6_type": 8, "nd_target": 128,
    "nd_sll": 48, "nd_tll": 48,
}
MAC_FIELDS = {"dl_src", "dl_dst", "arp_sha", "arp_tha", "nd_sll", "nd_tll"}
IPV4_FIELDS = {"arp_spa", "arp_tpa"}
IPV6_FIELDS = {"ipv6_src", "ipv6_dst", "nd_target"}

# --- set_field targets: ovsflow (OXM-style) name -> Ryu OXM name --------------------------------
SET_OXM: dict[str, str] = {
    "vlan_vid": "vlan_vid", "tun_id": "tunnel_id", "eth_src": "eth_src", "eth_dst": "eth_dst",
    "arp_op": "arp_op", "arp_sha": "arp_sha", "arp_tha": "arp_tha", "arp_spa": "arp_spa",
    "arp_tpa": "arp_tpa", "ipv6_src": "ipv6_src", "ipv6_dst": "ipv6_dst",
    "icmpv6_type": "icmpv6_type", "nd_tll": "ipv6_nd_tll", "nd_sll": "ipv6_nd_sll",
}
OXM_SET = {v: k for k, v in SET_OXM.items()}
SET_KIND = {"mac": MAC_FIELDS, "ipv4": IPV4_FIELDS, "ipv6": IPV6_FIELDS}

# --- NXM fields (learn specs, move): ovsflow name -> (Ryu NXM name, bit width) ------------------
# These are the NXM headers ovs-ofctl puts in NXAST_LEARN / NXAST_REG_MOVE for the names in
# flow.NXM_NAMES (NXM_OF_IN_PORT is 16 bits, unlike OXM in_port).
NXM: dict[str, tuple[str, int]] = {
    "in_port": ("in_port_nxm", 16),
    "tun_id": ("tunnel_id_nxm", 64),
    "vlan_tci": ("vlan_tci", 16),
    "dl_src": ("eth_src_nxm", 48),
    "dl_dst": ("eth_dst_nxm", 48),
    "arp_op": ("arp_op_nxm", 16),
    "arp_spa": ("arp_spa_nxm", 32),
    "arp_tpa": ("arp_tpa_nxm", 32),
    "arp_sha": ("arp_sha_nxm", 48),
    "arp_tha": ("arp_tha_nxm", 48),
    "ipv6_src": ("ipv6_src_nxm", 128),
    "ipv6_dst": ("ipv6_dst_nxm", 128),
    "nd_target": ("nd_target", 128),
    "nd_sll": ("nd_sll", 48),
    "nd_tll": ("nd_tll", 48),
    "icmpv6_type": ("icmpv6_type_nxm", 8),
}
# Decoding accepts both the NXM and the OXM spelling OVS may answer with.
NXM_BACK: dict[str, str] = {ryu: name for name, (ryu, _) in NXM.items()}
NXM_BACK.update({"in_port": "in_port", "tunnel_id": "tun_id", "eth_src": "dl_src",
                 "eth_dst": "dl_dst", "arp_op": "arp_op", "arp_spa": "arp_spa",
                 "arp_tpa": "arp_tpa", "arp_sha": "arp_sha", "arp_tha": "arp_tha",
                 "ipv6_src": "ipv6_src", "ipv6_dst": "ipv6_dst", "ipv6_nd_target": "nd_target",
                 "ipv6_nd_sll": "nd_sll", "ipv6_nd_tll": "nd_tll", "icmpv6_type": "icmpv6_type"})

GROUP_TYPES = {"all": 0, "select": 1, "indirect": 2, "ff": 3, "fast_failover": 3}
GROUP_NAMES = {0: "all", 1: "select", 2: "indirect", 3: "ff"}


class EncodeError(ValueError):
    """A Flow uses something this encoder cannot express (a compiler/encoder mismatch)."""


# ------------------------------------------------------------------------------------------------
# values


def _user_value(name: str, value: int) -> Any:
    """Ryu's OXM codecs take MACs and IPs as text."""
    if name in MAC_FIELDS:
        return F.format_mac(value)
    if name in IPV4_FIELDS:
        return str(ipaddress.IPv4Address(value))
    if name in IPV6_FIELDS:
        return str(ipaddress.IPv6Address(value))
    return value


def _int_value(name: str, value: Any) -> int:
    if isinstance(value, int):
        return value
    if name in MAC_FIELDS:
        return F.parse_mac(value)
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
                v, m = F.OFPVID_PRESENT | (value if isinstance(value, int) else value[0]), 0x1FFF
                if isinstance(value, tuple):
                    m = F.OFPVID_PRESENT | value[1]
            else:
                v, m = (value, 0xFFFF) if isinstance(value, int) else value
                if m & 0xE000:
                    raise EncodeError(f"VLAN PCP matches are not supported: vlan_tci={v:#x}/{m:#x}")
                v, m = v & 0x1FFF, m & 0x1FFF
            v &= m
            if m == 0x1FFF and v & F.OFPVID_PRESENT:
                out["dl_vlan"] = v & 0xFFF
            elif m:
                out["vlan_tci"] = (v, m)
            continue
        if isinstance(value, tuple):
            v, m = value
            full = _full(FIELD_BITS[name])
            m &= full
            if m == full:
                out[name] = v & full
            elif m:
                out[name] = (v & m, m)
        else:
            out[name] = value
    return tuple(sorted(out.items(), key=lambda kv: F.FIELD_ORDER.get(kv[0], 99)))


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


def canonical_flow(flow: Flow) -> Flow:
    """`flow` as it reads back from a switch (see canonical_match)."""
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
            kw["vlan_vid"] = F.OFPVID_PRESENT | value  # type: ignore[operator]
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
        kind = F.SET_FIELDS[a.field]
        value: Any = a.value
        if kind == "mac":
            value = F.format_mac(a.value)
        elif kind in ("ipv4", "ipv6"):
            value = str(ipaddress.ip_address(a.value))
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
