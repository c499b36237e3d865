"""The one field registry: every packet field ovsflow matches, sets, moves or learns, described once.

Flow text (`flow.py`), the OpenFlow wire codec, frames (`packet.py`) and the evaluator all derive
what they need from `FIELDS`: bit width, how a value prints, its OXM header (class, field number,
bytes), the NXM name ovs-ofctl writes in learn()/move, Ryu's names for it, its match prerequisites
(ovs-fields(7)), and which attribute of a `packet.Frame` holds it. Adding a match field is one entry
here plus its uses.

Names are ovs-ofctl's match names (`dl_src`, `tun_id`); `set_field` uses the OXM spelling
(`eth_src`), recorded as `set_name`. The three VLAN views (`dl_vlan`: the 12-bit VID of a present
header; `vlan_tci`: the raw 16-bit TCI; `vlan_vid`: the 13-bit OXM value with OFPVID_PRESENT) are
separate entries because OVS treats them differently, and the codec maps the first two onto OXM
vlan_vid.

Also here: the values of fields that more than one module names (ethertypes, IP protocols, MAC
constants) and the address <-> integer conversions, so each exists once.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

# --- values several modules name -------------------------------------------------------------------
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental: test frames that are not IP
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ARP_REQUEST, ARP_REPLY = 1, 2
ND_SOLICIT, ND_ADVERT = 135, 136
BROADCAST = 0xFFFFFFFFFFFF
MULTICAST_BIT = 0x010000000000  # the group bit of the first octet
OFPVID_PRESENT = 0x1000  # OpenFlow's "a VLAN header is present" bit of vlan_vid
OXM_OPENFLOW_BASIC = 0x8000  # OXM class of the standard fields
OXM_ERICSSON = 0x1000  # OVS's ERICOXM_OF class (nd_reserved, nd_options_type), no experimenter id
OXM_NXM_1 = 0x0001  # Nicira's NXM_1 class, which OVS also accepts inside OpenFlow 1.2+ matches (nw_ttl)


@dataclass(frozen=True, slots=True)
class Field:
    """One field. `kind` says how values print and parse: port, hex, int, mac, ipv4, ipv6."""

    name: str
    bits: int
    kind: str
    match: bool = True  # may appear in a Flow's match
    oxm: tuple[int, int, int] | None = None  # (class, field number, value bytes)
    nxm: str | None = None  # NXM name in ovs-ofctl's learn()/move text
    nxm_code: tuple[int, int] | None = None  # its (class, field number) in OVS's nx-match numbering
    nxm_bits: int | None = None  # the NXM field's width when it differs (NXM_OF_IN_PORT: 16)
    ryu_oxm: str | None = None  # Ryu's OXM match/set_field name
    ryu_nxm: str | None = None  # Ryu's NXM name for learn()/move
    set_name: str | None = None  # set_field spelling, if set_field may write it
    prereqs: tuple[tuple[str, frozenset[int]], ...] = ()  # (field, allowed values) the match needs
    frame: str | None = None  # attribute of packet.Frame holding it (None: derived, see packet.py)

    @property
    def nxm_width(self) -> int:
        return self.nxm_bits or self.bits


def _needs(*pairs: tuple[str, int | tuple[int, ...]]) -> tuple[tuple[str, frozenset[int]], ...]:
    return tuple((name, frozenset(v if isinstance(v, tuple) else (v,))) for name, v in pairs)


_ARP = _needs(("dl_type", ETH_TYPE_ARP))
_IP6 = _needs(("dl_type", ETH_TYPE_IPV6))
_ICMP6 = _needs(("dl_type", ETH_TYPE_IPV6), ("nw_proto", IPPROTO_ICMPV6))
_IP4 = _needs(("dl_type", ETH_TYPE_IP))
_ICMP4 = _needs(("dl_type", ETH_TYPE_IP), ("nw_proto", IPPROTO_ICMP))
_TP = _needs(("dl_type", (ETH_TYPE_IP, ETH_TYPE_IPV6)), ("nw_proto", (IPPROTO_TCP, IPPROTO_UDP)))
_BASIC = OXM_OPENFLOW_BASIC

# Order is the canonical order of fields in a flow's text (renders depend on it: append new ones).
_ALL = (
    Field("in_port", 32, "port", oxm=(_BASIC, 0, 4), nxm="NXM_OF_IN_PORT", nxm_code=(0, 0), nxm_bits=16,
          ryu_oxm="in_port", ryu_nxm="in_port_nxm", frame="in_port"),
    Field("tun_id", 64, "hex", oxm=(_BASIC, 38, 8), nxm="NXM_NX_TUN_ID", nxm_code=(1, 16), ryu_oxm="tunnel_id",
          ryu_nxm="tunnel_id_nxm", set_name="tun_id", frame="tun_id"),
    Field("dl_vlan", 12, "int"),  # "a VLAN header is present and its VID is N"
    Field("vlan_tci", 16, "hex", nxm="NXM_OF_VLAN_TCI", nxm_code=(0, 4), ryu_nxm="vlan_tci"),  # 0x0000/0x1fff: no header
    Field("dl_src", 48, "mac", oxm=(_BASIC, 4, 6), nxm="NXM_OF_ETH_SRC", nxm_code=(0, 2), ryu_oxm="eth_src",
          ryu_nxm="eth_src_nxm", set_name="eth_src", frame="eth_src"),
    Field("dl_dst", 48, "mac", oxm=(_BASIC, 3, 6), nxm="NXM_OF_ETH_DST", nxm_code=(0, 1), ryu_oxm="eth_dst",
          ryu_nxm="eth_dst_nxm", set_name="eth_dst", frame="eth_dst"),
    Field("dl_type", 16, "hex", oxm=(_BASIC, 5, 2), nxm="NXM_OF_ETH_TYPE", nxm_code=(0, 3), ryu_oxm="eth_type",
          frame="ethertype"),
    Field("nw_proto", 8, "int", oxm=(_BASIC, 10, 1), nxm="NXM_OF_IP_PROTO", nxm_code=(0, 6), ryu_oxm="ip_proto",
          prereqs=_needs(("dl_type", (ETH_TYPE_IP, ETH_TYPE_IPV6))), frame="nw_proto"),
    Field("arp_op", 16, "int", oxm=(_BASIC, 21, 2), nxm="NXM_OF_ARP_OP", nxm_code=(0, 15), ryu_oxm="arp_op",
          ryu_nxm="arp_op_nxm", set_name="arp_op", prereqs=_ARP, frame="arp_op"),
    Field("arp_spa", 32, "ipv4", oxm=(_BASIC, 22, 4), nxm="NXM_OF_ARP_SPA", nxm_code=(0, 16), ryu_oxm="arp_spa",
          ryu_nxm="arp_spa_nxm", set_name="arp_spa", prereqs=_ARP, frame="arp_spa"),
    Field("arp_tpa", 32, "ipv4", oxm=(_BASIC, 23, 4), nxm="NXM_OF_ARP_TPA", nxm_code=(0, 17), ryu_oxm="arp_tpa",
          ryu_nxm="arp_tpa_nxm", set_name="arp_tpa", prereqs=_ARP, frame="arp_tpa"),
    Field("ipv6_src", 128, "ipv6", oxm=(_BASIC, 26, 16), nxm="NXM_NX_IPV6_SRC", nxm_code=(1, 19), ryu_oxm="ipv6_src",
          ryu_nxm="ipv6_src_nxm", set_name="ipv6_src", prereqs=_IP6, frame="ipv6_src"),
    Field("ipv6_dst", 128, "ipv6", oxm=(_BASIC, 27, 16), nxm="NXM_NX_IPV6_DST", nxm_code=(1, 20), ryu_oxm="ipv6_dst",
          ryu_nxm="ipv6_dst_nxm", set_name="ipv6_dst", prereqs=_IP6, frame="ipv6_dst"),
    Field("icmpv6_type", 8, "int", oxm=(_BASIC, 29, 1), nxm="NXM_NX_ICMPV6_TYPE", nxm_code=(1, 21), ryu_oxm="icmpv6_type",
          ryu_nxm="icmpv6_type_nxm", set_name="icmpv6_type", prereqs=_ICMP6, frame="icmpv6_type"),
    Field("nd_target", 128, "ipv6", oxm=(_BASIC, 31, 16), nxm="NXM_NX_ND_TARGET", nxm_code=(1, 23), ryu_oxm="ipv6_nd_target",
          ryu_nxm="nd_target", prereqs=_ICMP6 + _needs(("icmpv6_type", (ND_SOLICIT, ND_ADVERT))),
          frame="nd_target"),
    # Fields ovsflow sets, moves or learns but does not match on today.
    Field("arp_sha", 48, "mac", oxm=(_BASIC, 24, 6), nxm="NXM_NX_ARP_SHA", nxm_code=(1, 17), ryu_oxm="arp_sha",
          ryu_nxm="arp_sha_nxm", set_name="arp_sha", prereqs=_ARP, frame="arp_sha"),
    Field("arp_tha", 48, "mac", oxm=(_BASIC, 25, 6), nxm="NXM_NX_ARP_THA", nxm_code=(1, 18), ryu_oxm="arp_tha",
          ryu_nxm="arp_tha_nxm", set_name="arp_tha", prereqs=_ARP, frame="arp_tha"),
    Field("nd_sll", 48, "mac", oxm=(_BASIC, 32, 6), nxm="NXM_NX_ND_SLL", nxm_code=(1, 24), ryu_oxm="ipv6_nd_sll",
          ryu_nxm="nd_sll", set_name="nd_sll", prereqs=_ICMP6 + _needs(("icmpv6_type", ND_SOLICIT)),
          frame="nd_sll"),
    Field("nd_tll", 48, "mac", oxm=(_BASIC, 33, 6), nxm="NXM_NX_ND_TLL", nxm_code=(1, 25), ryu_oxm="ipv6_nd_tll",
          ryu_nxm="nd_tll", set_name="nd_tll", prereqs=_ICMP6 + _needs(("icmpv6_type", ND_ADVERT)),
          frame="nd_tll"),
    Field("vlan_vid", 13, "hex", match=False, oxm=(_BASIC, 6, 2), ryu_oxm="vlan_vid", set_name="vlan_vid"),
    Field("icmpv6_code", 8, "int", match=False, oxm=(_BASIC, 30, 1), nxm="NXM_NX_ICMPV6_CODE", nxm_code=(1, 22),
          ryu_oxm="icmpv6_code",
          set_name="icmpv6_code", prereqs=_ICMP6, frame="icmpv6_code"),
    # OVS extensions (ERICOXM class, OVS >= 2.11): the NA flags word (R, S, O in the top bits) and
    # the ND option type (1 source, 2 target link-layer address). Ryu 4.34 has no codec for them.
    Field("nd_reserved", 32, "hex", match=False, oxm=(OXM_ERICSSON, 1, 4), set_name="nd_reserved",
          prereqs=_ICMP6, frame="nd_reserved"),
    Field("nd_options_type", 8, "int", match=False, oxm=(OXM_ERICSSON, 2, 1), set_name="nd_options_type",
          prereqs=_ICMP6, frame="nd_options_type"),
    # IPv4, for routing. ovs-ofctl matches nw_src/nw_dst and sets ip_src/ip_dst (the OXM spelling).
    Field("nw_src", 32, "ipv4", oxm=(_BASIC, 11, 4), nxm="NXM_OF_IP_SRC", nxm_code=(0, 7), ryu_oxm="ipv4_src",
          ryu_nxm="ipv4_src_nxm", set_name="ip_src", prereqs=_IP4, frame="nw_src"),
    Field("nw_dst", 32, "ipv4", oxm=(_BASIC, 12, 4), nxm="NXM_OF_IP_DST", nxm_code=(0, 8), ryu_oxm="ipv4_dst",
          ryu_nxm="ipv4_dst_nxm", set_name="ip_dst", prereqs=_IP4, frame="nw_dst"),
    Field("nw_ttl", 8, "int", oxm=(OXM_NXM_1, 29, 1), nxm="NXM_NX_IP_TTL", nxm_code=(1, 29), ryu_oxm="nw_ttl", set_name="nw_ttl",
          prereqs=_needs(("dl_type", (ETH_TYPE_IP, ETH_TYPE_IPV6))), frame="nw_ttl"),
    Field("icmp_type", 8, "int", oxm=(_BASIC, 19, 1), nxm="NXM_OF_ICMP_TYPE", nxm_code=(0, 13), ryu_oxm="icmpv4_type",
          ryu_nxm="icmpv4_type_nxm", set_name="icmp_type", prereqs=_ICMP4, frame="icmp_type"),
    Field("icmp_code", 8, "int", oxm=(_BASIC, 20, 1), nxm="NXM_OF_ICMP_CODE", nxm_code=(0, 14), ryu_oxm="icmpv4_code",
          ryu_nxm="icmpv4_code_nxm", set_name="icmp_code", prereqs=_ICMP4, frame="icmp_code"),
    # TCP/UDP ports, for traces of TCP and UDP frames (`ovsflow trace --tcp N`): ovs-ofctl's generic
    # names, valid with nw_proto 6 or 17. The pipelines do not match them, so no wire codes: OpenFlow
    # has one OXM per protocol (tcp_src, udp_src...), which a match would have to choose.
    Field("tp_src", 16, "int", match=False, prereqs=_TP, frame="tp_src"),
    Field("tp_dst", 16, "int", match=False, prereqs=_TP, frame="tp_dst"),
)

FIELDS: Mapping[str, Field] = {f.name: f for f in _ALL}
MATCH_FIELDS: Mapping[str, Field] = {f.name: f for f in _ALL if f.match}
FIELD_ORDER: Mapping[str, int] = {f.name: i for i, f in enumerate(_ALL)}
SET_FIELDS: Mapping[str, Field] = {f.set_name: f for f in _ALL if f.set_name}  # by set_field spelling
NXM_FIELDS: Mapping[str, Field] = {f.name: f for f in _ALL if f.nxm}


def field(name: str) -> Field:
    """A field by its match name or its set_field spelling."""
    found = FIELDS.get(name) or SET_FIELDS.get(name)
    if found is None:
        raise KeyError(f"unknown field {name!r}")
    return found


# --- values: text <-> integers --------------------------------------------------------------------


def format_mac(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def parse_mac(text: str) -> int:
    """'aa:bb:cc:dd:ee:ff' (either case) as an integer; ValueError for anything else."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return int("".join(parts), 16)


def ip4_int(ip: str) -> int:
    """A dotted-quad IPv4 address as an integer (inet_pton: 10x cheaper than ipaddress per call,
    which counts at 100,000 ports); other spellings go through ipaddress."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except OSError:
        return int(ipaddress.IPv4Address(ip))


def ip6_int(ip: str) -> int:
    """An IPv6 address as an integer; a zone suffix (%eth0) is ignored: flows do not match it."""
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, ip.split("%")[0]), "big")


def format_value(kind: str, value: int) -> str:
    """A field value as ovs-ofctl prints it."""
    if kind == "mac":
        return format_mac(value)
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(value))
    if kind == "ipv6":
        return str(ipaddress.IPv6Address(value))
    if kind == "hex":
        return hex(value)
    return str(value)


def parse_value(kind: str, text: str) -> int:
    """The inverse of format_value (and plain or 0x-prefixed integers for every kind)."""
    if kind == "mac" and ":" in text:
        return parse_mac(text.lower())
    if kind == "ipv4" and "." in text:
        return ip4_int(text)
    if kind == "ipv6" and ":" in text:
        return ip6_int(text)
    return int(text, 0)


def mac(value: str | int) -> int:
    """A MAC address as an integer, from 'aa:bb:..' text (either case) or an integer."""
    return value if isinstance(value, int) else parse_mac(value.lower())


def ipv4(value: str | int) -> int:
    return value if isinstance(value, int) else ip4_int(value)


def ipv6(value: str | int) -> int:
    return value if isinstance(value, int) else ip6_int(value)
