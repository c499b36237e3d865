"""Port security: the source addresses a VM port may send from (see README, Tenant security).

A port with an address (`ip`, `ipv6` or `allowed_addresses`) is held to its addresses in both
families: IPv4 from `ip` and the IPv4 entries of `allowed_addresses`; IPv6 from `ipv6`, the IPv6
entries and the link-local address derived from its MAC (EUI-64, what Linux configures). A port
with no address at all is checked at layer 2 only (its MAC, no VLAN tag). The compiler's
antispoof.py turns these sets into flows; the checks here are the ones the schema cannot express.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .problems import Problem

if TYPE_CHECKING:
    from .model import Port, Topology

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def canonical_allowed(items: Iterable[object]) -> tuple[str, ...]:
    """The entries as given (lower case, stripped of nothing else): `allowed_problems` words what
    is wrong with them; the sets below read only valid ones."""
    return tuple(str(i).lower() for i in items)


def _parse(entry: str) -> Net | None:
    try:
        return ipaddress.ip_network(entry, strict=True)
    except ValueError:
        return None


def link_local(mac: str) -> ipaddress.IPv6Address:
    """fe80::/64 with the modified EUI-64 interface id of `mac` (RFC 4291 appendix A)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + iid)


def checked(port: Port) -> bool:
    """Whether the port's IP sources are checked (it has some address)."""
    return bool(port.ip or port.ipv6 or port.allowed_addresses)


def allowed_v4(port: Port) -> list[ipaddress.IPv4Network]:
    """The IPv4 sources of a checked port, collapsed (no entry covers another)."""
    nets = [ipaddress.IPv4Network(port.ip)] if port.ip else []
    nets += [n for n in map(_parse, port.allowed_addresses) if isinstance(n, ipaddress.IPv4Network)]
    return list(ipaddress.collapse_addresses(nets))


def allowed_v6(port: Port) -> list[ipaddress.IPv6Network]:
    """The IPv6 sources of a checked port, collapsed: its ipv6, allowed entries, link-local."""
    nets = [ipaddress.IPv6Network(link_local(port.mac))]
    nets += [ipaddress.IPv6Network(port.ipv6)] if port.ipv6 else []
    nets += [n for n in map(_parse, port.allowed_addresses) if isinstance(n, ipaddress.IPv6Network)]
    return list(ipaddress.collapse_addresses(nets))


def allowed_problems(topo: Topology) -> list[Problem]:
    """Each entry an IPv4/IPv6 address or CIDR (host bits clear); IPv4 inside the network's subnet
    (when it has one) and not covering its gateway; IPv6 unicast with a prefix of /64 or longer."""
    out: list[Problem] = []
    for p in topo.ports.values():
        if not p.allowed_addresses:
            continue
        net = topo.networks.get(p.network)
        subnet = ipaddress.IPv4Network(net.subnet) if net is not None and net.subnet and _parse(net.subnet) else None
        for i, entry in enumerate(p.allowed_addresses):
            where, n = f"ports.{p.name}.allowed_addresses.{i}", _parse(entry)
            if n is None:
                out.append(Problem(topo.source, where, "not an IPv4/IPv6 address or CIDR (host bits clear)", entry))
            elif isinstance(n, ipaddress.IPv4Network):
                if subnet is not None and not n.subnet_of(subnet):
                    out.append(Problem(topo.source, where, f"not inside subnet {subnet} of network {p.network}", entry))
                elif net is not None and net.gateway and ipaddress.IPv4Address(net.gateway) in n:
                    out.append(Problem(topo.source, where, f"covers the gateway of network {p.network}", entry))
                elif n.network_address.is_multicast or n.network_address.is_unspecified or n.broadcast_address.is_multicast:
                    out.append(Problem(topo.source, where, "not a unicast address", entry))
            elif n.prefixlen < 64:
                out.append(Problem(topo.source, where, "an IPv6 prefix must be /64 or longer", entry))
            elif n.network_address.is_multicast or n.network_address.is_unspecified or n.network_address.is_loopback:
                out.append(Problem(topo.source, where, "not a unicast address", entry))
    return out
