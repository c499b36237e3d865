"""An Ethernet frame as the flow-table evaluator sees it: an immutable value with typed fields.

Only what ovsflow's pipelines look at is modelled: Ethernet addresses, at most one 802.1Q header
(its VID), the ethertype, ARP, IPv4, IPv6/ND and TCP/UDP port fields, plus the two pieces of metadata OVS keeps next to
a packet while it walks the tables: the ingress OpenFlow port and the tunnel key (`tun_id`).
Fields are read and written by their ovs-fields(7)/NXM names (`dl_src`, `vlan_tci`, `tun_id`, ...)
and by the OXM names that `set_field` uses (`eth_src`, `vlan_vid`, ...): `fields.FIELDS` says which
attribute holds each, so actions and learn() specs from `ovsflow.flow` apply as they are.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from .fields import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_EXPERIMENTAL,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ND_SOLICIT,
    OFPVID_PRESENT,
    field,
    format_mac,
    ipv4,
    ipv6,
    mac,
)

__all__ = [
    "ARP_REPLY",
    "ARP_REQUEST",
    "BROADCAST",
    "ETH_TYPE_ARP",
    "ETH_TYPE_IP",
    "ETH_TYPE_IPV6",
    "IPPROTO_TCP",
    "Frame",
    "ipv4",
    "ipv6",
    "mac",
]


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
    nw_proto: int | None = None
    nw_src: int | None = None  # IPv4
    nw_dst: int | None = None
    nw_ttl: int | None = None  # IPv4 TTL or IPv6 hop limit
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmpv6_type: int | None = None
    icmpv6_code: int | None = None
    nd_target: int | None = None
    nd_sll: int | None = None
    nd_tll: int | None = None
    nd_reserved: int | None = None
    nd_options_type: int | None = None
    payload: str = ""
    in_port: int = 0
    tun_id: int = 0
    tp_src: int | None = None  # TCP/UDP ports (last: positional construction above stays valid)
    tp_dst: int | None = None

    # -- constructors -------------------------------------------------------------------------

    @staticmethod
    def ethernet(src: str | int, dst: str | int, ethertype: int = ETH_TYPE_EXPERIMENTAL,
                 vlan: int | None = None, payload: str = "") -> Frame:
        """An opaque layer-2 frame (by default of the IEEE local experimental ethertype): an IPv4
        ethertype without an IPv4 header has no source address, which br-int's antispoof table
        drops as OVS would (use Frame.ipv4 for IPv4)."""
        return Frame(mac(src), mac(dst), ethertype, vlan, payload=payload)

    @staticmethod
    def arp_request(src_mac: str | int, src_ip: str | int, target_ip: str | int,
                    vlan: int | None = None, payload: str = "") -> Frame:
        """A broadcast 'who has target_ip, tell src_ip'."""
        m = mac(src_mac)
        return Frame(m, BROADCAST, ETH_TYPE_ARP, vlan, ARP_REQUEST, ipv4(src_ip), ipv4(target_ip),
                     m, 0, payload=payload)

    @staticmethod
    def arp_reply(src_mac: str | int, src_ip: str | int, dst_mac: str | int, dst_ip: str | int,
                  vlan: int | None = None, payload: str = "") -> Frame:
        """A unicast 'src_ip is at src_mac' to dst_mac."""
        s, d = mac(src_mac), mac(dst_mac)
        return Frame(s, d, ETH_TYPE_ARP, vlan, ARP_REPLY, ipv4(src_ip), ipv4(dst_ip), s, d,
                     payload=payload)

    @staticmethod
    def ipv4(src_mac: str | int, dst_mac: str | int, src_ip: str | int, dst_ip: str | int,
             proto: int = IPPROTO_UDP, ttl: int = 64, vlan: int | None = None, payload: str = "") -> Frame:
        """An IPv4 packet (UDP unless told otherwise) with the given TTL."""
        return Frame(mac(src_mac), mac(dst_mac), ETH_TYPE_IP, vlan, nw_proto=proto, nw_src=ipv4(src_ip),
                     nw_dst=ipv4(dst_ip), nw_ttl=ttl, payload=payload)

    @staticmethod
    def icmp_echo(src_mac: str | int, dst_mac: str | int, src_ip: str | int, dst_ip: str | int,
                  ttl: int = 64, vlan: int | None = None, payload: str = "") -> Frame:
        """An ICMP echo request (ping)."""
        return replace(Frame.ipv4(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_ICMP, ttl, vlan, payload),
                       icmp_type=ICMP_ECHO_REQUEST, icmp_code=0)

    @staticmethod
    def transport(src_mac: str | int, dst_mac: str | int, src_ip: str | int, dst_ip: str | int,
                  proto: int, src_port: int, dst_port: int, ttl: int = 64, vlan: int | None = None,
                  payload: str = "") -> Frame:
        """A TCP (proto 6) or UDP (17) packet between two ports."""
        return replace(Frame.ipv4(src_mac, dst_mac, src_ip, dst_ip, proto, ttl, vlan, payload),
                       tp_src=src_port, tp_dst=dst_port)

    @staticmethod
    def neighbour_solicitation(src_mac: str | int, src_ip: str | int, target_ip: str | int,
                               vlan: int | None = None, payload: str = "") -> Frame:
        """An IPv6 neighbour solicitation for target_ip, to its solicited-node multicast group,
        with the sender's link-layer address option."""
        m, target = mac(src_mac), ipv6(target_ip)
        group = 0xFF020000000000000000000000000000 | 0x1FF000000 | (target & 0xFFFFFF)
        return Frame(m, 0x333300000000 | (group & 0xFFFFFFFF), ETH_TYPE_IPV6, vlan, ipv6_src=ipv6(src_ip),
                     ipv6_dst=group, nw_proto=IPPROTO_ICMPV6, icmpv6_type=ND_SOLICIT, icmpv6_code=0,
                     nd_target=target, nd_sll=m, nd_reserved=0, nd_options_type=1, payload=payload)

    # -- field access by OVS names ---------------------------------------------------------------

    @property
    def tci(self) -> int:
        """The 802.1Q TCI as OVS matches it: 0 when untagged, else OFPVID_PRESENT (CFI) | VID."""
        return 0 if self.vlan is None else OFPVID_PRESENT | self.vlan

    def get(self, name: str) -> int | None:
        """Value of a field by its match or set_field name (fields.FIELDS); None when the frame
        does not carry that header. KeyError for a field the registry does not know."""
        attr = field(name).frame
        if attr is not None:
            return getattr(self, attr)  # type: ignore[no-any-return]
        if name == "vlan_tci":
            return self.tci
        if name == "dl_vlan":
            return self.vlan
        return self.tci & 0x1FFF  # vlan_vid

    def set(self, name: str, value: int) -> Frame:
        """A copy with one field written, as set_field/load/move would (whole field)."""
        attr = field(name).frame
        if attr is not None:
            return replace(self, **{attr: value})  # type: ignore[arg-type]  # an int field, by the registry
        if name == "vlan_tci":
            # A TCI without the CFI/present bit means "no 802.1Q header" (load:0->NXM_OF_VLAN_TCI[]).
            return replace(self, vlan=(value & 0xFFF) if value & OFPVID_PRESENT else None)
        # dl_vlan, vlan_vid: OVS's set_field:N->vlan_vid keeps the header and rewrites the 12 VID
        # bits; the OFPVID_PRESENT bit in N is accepted and ignored. Callers check a header exists.
        return replace(self, vlan=value & 0xFFF)

    def wire(self) -> Frame:
        """The frame as it appears on a wire: pipeline metadata cleared."""
        return replace(self, in_port=0, tun_id=0)

    def __str__(self) -> str:
        parts = [f"{format_mac(self.eth_src)}>{format_mac(self.eth_dst)}"]
        if self.vlan is not None:
            parts.append(f"vlan={self.vlan}")
        if self.ethertype == ETH_TYPE_IP and self.nw_src is not None:
            src, dst = ipaddress.IPv4Address(self.nw_src), ipaddress.IPv4Address(self.nw_dst or 0)
            kind = {1: "icmp", 6: "tcp", 17: "udp"}.get(self.nw_proto or 0, f"proto {self.nw_proto}")
            if self.icmp_type is not None:
                kind += f" type {self.icmp_type}"
            if self.tp_src is not None or self.tp_dst is not None:
                kind += f" {self.tp_src}>{self.tp_dst}"
            parts.append(f"ip {src} > {dst} {kind} ttl={self.nw_ttl}")
        elif self.ethertype == ETH_TYPE_ARP and self.arp_op is not None:
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
