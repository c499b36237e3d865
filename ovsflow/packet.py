"""An Ethernet frame as the flow-table evaluator sees it: an immutable value with typed fields.

Only what ovsflow's pipelines look at is modelled: Ethernet addresses, at most one 802.1Q header
(its VID), the ethertype, ARP and IPv6/ND fields, plus the two pieces of metadata OVS keeps next to
a packet while it walks the tables: the ingress OpenFlow port and the tunnel key (`tun_id`).
Fields are read and written by their ovs-fields(7)/NXM names (`dl_src`, `vlan_tci`, `tun_id`, ...)
and by the OXM names that `set_field` uses (`eth_src`, `vlan_vid`, ...), so actions and learn()
specs from `ovsflow.flow` apply without translation tables elsewhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from .flow import OFPVID_PRESENT, format_mac, parse_mac

BROADCAST = 0xFFFFFFFFFFFF
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ARP_REQUEST = 1
ARP_REPLY = 2

# Bit width of every field the evaluator can read or write (match, NXM and set_field names).
FIELD_WIDTHS: dict[str, int] = {
    "in_port": 32,
    "tun_id": 64,
    "vlan_tci": 16,
    "dl_vlan": 12,
    "vlan_vid": 13,
    "dl_src": 48,
    "dl_dst": 48,
    "eth_src": 48,
    "eth_dst": 48,
    "dl_type": 16,
    "arp_op": 16,
    "arp_spa": 32,
    "arp_tpa": 32,
    "arp_sha": 48,
    "arp_tha": 48,
    "ipv6_src": 128,
    "ipv6_dst": 128,
    "icmpv6_type": 8,
    "nd_target": 128,
    "nd_sll": 48,
    "nd_tll": 48,
}
# OXM (set_field) names that are aliases of match names.
_ALIASES = {"eth_src": "dl_src", "eth_dst": "dl_dst"}
_ARP_FIELDS = ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")
_IPV6_FIELDS = ("ipv6_src", "ipv6_dst", "icmpv6_type", "nd_target", "nd_sll", "nd_tll")


def mac(value: str | int) -> int:
    """A MAC address as an int, from 'aa:bb:..' text or an int."""
    return value if isinstance(value, int) else parse_mac(value.lower())


def ipv4(value: str | int) -> int:
    return value if isinstance(value, int) else int(ipaddress.IPv4Address(value))


def ipv6(value: str | int) -> int:
    return value if isinstance(value, int) else int(ipaddress.IPv6Address(value))


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame plus its pipeline metadata (`in_port`, `tun_id`). Immutable: actions make copies.

    `vlan` is the VID of the 802.1Q header, or None when the frame is untagged. ARP/IPv6 fields
    are None when the frame is not of that type, which is how "prerequisite not met" shows up.
    `payload` is an opaque label so a test can follow one frame through several hosts.
    """

    eth_src: int
    eth_dst: int
    ethertype: int = ETH_TYPE_IP
    vlan: int | None = None
    arp_op: int | None = None
    arp_spa: int | None = None
    arp_tpa: int | None = None
    arp_sha: int | None = None
    arp_tha: int | None = None
    ipv6_src: int | None = None
    ipv6_dst: int | None = None
    icmpv6_type: int | None = None
    nd_target: int | None = None
    nd_sll: int | None = None
    nd_tll: int | None = None
    payload: str = ""
    in_port: int = 0
    tun_id: int = 0

    # -- constructors -------------------------------------------------------------------------

    @staticmethod
    def ethernet(src: str | int, dst: str | int, ethertype: int = ETH_TYPE_IP,
                 vlan: int | None = None, payload: str = "") -> "Frame":
        return Frame(mac(src), mac(dst), ethertype, vlan, payload=payload)

    @staticmethod
    def arp_request(src_mac: str | int, src_ip: str | int, target_ip: str | int,
                    vlan: int | None = None, payload: str = "") -> "Frame":
        """A broadcast 'who has target_ip, tell src_ip'."""
        m = mac(src_mac)
        return Frame(m, BROADCAST, ETH_TYPE_ARP, vlan, ARP_REQUEST, ipv4(src_ip), ipv4(target_ip),
                     m, 0, payload=payload)

    @staticmethod
    def arp_reply(src_mac: str | int, src_ip: str | int, dst_mac: str | int, dst_ip: str | int,
                  vlan: int | None = None, payload: str = "") -> "Frame":
        """A unicast 'src_ip is at src_mac' to dst_mac."""
        s, d = mac(src_mac), mac(dst_mac)
        return Frame(s, d, ETH_TYPE_ARP, vlan, ARP_REPLY, ipv4(src_ip), ipv4(dst_ip), s, d,
                     payload=payload)

    # -- field access by OVS names ---------------------------------------------------------------

    @property
    def tci(self) -> int:
        """The 802.1Q TCI as OVS matches it: 0 when untagged, else OFPVID_PRESENT (CFI) | VID."""
        return 0 if self.vlan is None else OFPVID_PRESENT | self.vlan

    def get(self, name: str) -> int | None:
        """Value of a match/NXM/OXM field; None when the frame does not carry that header."""
        name = _ALIASES.get(name, name)
        if name == "dl_src":
            return self.eth_src
        if name == "dl_dst":
            return self.eth_dst
        if name == "dl_type":
            return self.ethertype
        if name == "vlan_tci":
            return self.tci
        if name == "dl_vlan":
            return self.vlan
        if name == "vlan_vid":
            return self.tci & 0x1FFF
        if name in ("in_port", "tun_id") or name in _ARP_FIELDS or name in _IPV6_FIELDS:
            return getattr(self, name)
        raise KeyError(f"evaluator does not model field {name!r}")

    def set(self, name: str, value: int) -> "Frame":
        """A copy with one field written, as set_field/load/move would (whole field)."""
        name = _ALIASES.get(name, name)
        if name == "dl_src":
            return replace(self, eth_src=value)
        if name == "dl_dst":
            return replace(self, eth_dst=value)
        if name == "dl_type":
            return replace(self, ethertype=value)
        if name == "vlan_tci":
            # A TCI without the CFI/present bit means "no 802.1Q header" (load:0->NXM_OF_VLAN_TCI[]).
            return replace(self, vlan=(value & 0xFFF) if value & OFPVID_PRESENT else None)
        if name in ("vlan_vid", "dl_vlan"):
            # OVS's set_field:N->vlan_vid keeps the header and rewrites the 12 VID bits; the
            # OFPVID_PRESENT bit in N is accepted and ignored. Callers check a header exists.
            return replace(self, vlan=value & 0xFFF)
        if name in ("in_port", "tun_id") or name in _ARP_FIELDS or name in _IPV6_FIELDS:
            return replace(self, **{name: value})
        raise KeyError(f"evaluator does not model field {name!r}")

    def wire(self) -> "Frame":
        """The frame as it appears on a wire: pipeline metadata cleared."""
        return replace(self, in_port=0, tun_id=0)

    def __str__(self) -> str:
        parts = [f"{format_mac(self.eth_src)}>{format_mac(self.eth_dst)}"]
        if self.vlan is not None:
            parts.append(f"vlan={self.vlan}")
        if self.ethertype == ETH_TYPE_ARP and self.arp_op is not None:
            spa = ipaddress.IPv4Address(self.arp_spa or 0)
            tpa = ipaddress.IPv4Address(self.arp_tpa or 0)
            if self.arp_op == ARP_REQUEST:
                parts.append(f"arp who-has {tpa} tell {spa}")
            else:
                parts.append(f"arp {spa} is-at {format_mac(self.arp_sha or 0)} (to {tpa})")
        else:
            parts.append(f"type={self.ethertype:#06x}")
        if self.tun_id:
            parts.append(f"tun_id={self.tun_id:#x}")
        if self.in_port:
            parts.append(f"in_port={self.in_port}")
        if self.payload:
            parts.append(f"[{self.payload}]")
        return " ".join(parts)
