"""br-int's antispoof table: a VM sends only from its own MAC and addresses (README, Tenant security).

`classify` has already checked the source MAC and that the frame is untagged; here, by ingress
port, the addresses: ARP sender (address and MAC), IPv4 source, IPv6 source and the neighbour
discovery fields (solicitation source link-layer address; advertisement target and target
link-layer address). What passes goes to from_vm; frames from br-tun never come here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_UDP,
    ND_ADVERT,
    ND_SOLICIT,
    mac,
)
from ..flow import Flow, MatchValue
from ..model import Network
from ..port_security import allowed_v4, allowed_v6, checked
from .facts import HostFacts
from .pieces import make

DHCP_REQUEST = {"nw_proto": IPPROTO_UDP, "nw_src": 0, "nw_dst": 0xFFFFFFFF}  # 0.0.0.0 -> 255.255.255.255


def _value(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> MatchValue:
    """An address (whole field) or a prefix as (value, mask)."""
    if net.prefixlen == net.max_prefixlen:
        return int(net.network_address)
    return int(net.network_address), int(net.netmask)


class AntiSpoofTables(HostFacts):
    """br-int's antispoof flows of one host, per network (its local ports)."""

    def int_antispoof(self, net: Network) -> Iterable[Flow]:
        table, ok = self.int["antispoof"], [self.int["from_vm"].goto()]
        for port in self.local_ports.get(net.name, ()):
            inp = {"in_port": self.vm_ofports[port.name]}
            yield make(table, 1, inp, ok)  # other ethertypes (and everything from a port without addresses)
            if not checked(port):
                continue
            own = mac(port.mac)
            arp, ip4, ip6 = ({**inp, "dl_type": t} for t in (ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6))
            icmp6 = {**ip6, "nw_proto": IPPROTO_ICMPV6}
            for base in (arp, ip4, ip6):
                yield make(table, 2, base, [])  # the family is checked: anything not allowed below is dropped
            v4 = [_value(n) for n in allowed_v4(port)]
            for spa in (*v4, 0):  # 0.0.0.0: an ARP probe (RFC 5227) poisons no cache
                yield make(table, 3, {**arp, "arp_spa": spa, "arp_sha": own}, ok)
            for src in v4:
                yield make(table, 3, {**ip4, "nw_src": src}, ok)
            yield make(table, 3, {**ip4, **DHCP_REQUEST}, ok)
            v6 = [_value(n) for n in allowed_v6(port)]
            for src in v6:
                yield make(table, 3, {**ip6, "ipv6_src": src}, ok)
            yield make(table, 3, {**icmp6, "ipv6_src": 0}, ok)  # ::, duplicate address detection and MLD
            solicit, advert = {**icmp6, "icmpv6_type": ND_SOLICIT}, {**icmp6, "icmpv6_type": ND_ADVERT}
            yield make(table, 4, solicit, [])
            yield make(table, 4, advert, [])
            for src in v6:
                for sll in (own, 0):  # without the option nobody learns a MAC from it
                    yield make(table, 5, {**solicit, "ipv6_src": src, "nd_sll": sll}, ok)
                for tll in (own, 0):  # an advertisement is sent from the address it advertises
                    yield make(table, 5, {**advert, "ipv6_src": src, "nd_target": src, "nd_tll": tll}, ok)
            yield make(table, 5, {**solicit, "ipv6_src": 0, "nd_sll": 0}, ok)  # DAD: from ::, no SLL option
