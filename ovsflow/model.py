"""The validated topology model: file -> JSON Schema -> semantic checks -> frozen dataclasses.

Every problem becomes one `Problem(file, path, message, value)` line, never a traceback, so an operator
sees exactly which field of which file is wrong. All problems are reported at once, not the first only.
"""

from __future__ import annotations

import gc
import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from .fields import ip4_int
from .limits import MAX_LOCAL_VLANS, TUNNEL_OFPORTS, VM_OFPORTS
from .load import read_document
from .port_security import allowed_problems, canonical_allowed
from .problems import Problem, TopologyError
from .routers import Router, build_routers, router_problems
from .schema_check import schema, schema_problems, type_problems

__all__ = ["MAX_LOCAL_VLANS", "Problem", "TopologyError", "read_document", "schema", "schema_problems", "type_problems"]


# Hosts, networks and ports are NamedTuples: immutable like frozen dataclasses, but ~10x cheaper to
# build, which matters at 100,000 ports (bench/).
class Host(NamedTuple):
    name: str
    vtep: str
    datapath_type: str = "system"
    bridge_int: str = "br-int"
    bridge_tun: str = "br-tun"
    dpid_int: int | None = None
    dpid_tun: int | None = None
    ovsdb: str | None = None


class Network(NamedTuple):
    name: str
    vni: int
    tunnel: str = "vxlan"
    mode: str = "learn"
    subnet: str | None = None
    gateway: str | None = None
    vlan: int | None = None
    hard_timeout: int = 300
    idle_timeout: int = 0


class Port(NamedTuple):  # the semantic checks read fields by position: see _HOST etc. below
    name: str
    host: str
    network: str
    mac: str  # lower case, colon separated
    ip: str | None = None
    ipv6: str | None = None  # canonical (compressed) form
    iface: str = ""
    ofport: int | None = None
    allowed_addresses: tuple[str, ...] = ()  # extra source addresses/CIDRs (port_security.py), canonical


_HOST, _NET, _MAC, _IFACE = itemgetter(1), itemgetter(2), itemgetter(3), itemgetter(6)
_HOST_NET, _NET_MAC, _HOST_IFACE, _ADDRESSES = itemgetter(1, 2), itemgetter(2, 3), itemgetter(1, 6), itemgetter(4, 5, 7)


@dataclass(frozen=True)
class Topology:
    source: str
    hosts: dict[str, Host]
    networks: dict[str, Network]
    ports: dict[str, Port]
    controller: str | None = None
    inactivity_probe_ms: int | None = None
    routers: dict[str, Router] = field(default_factory=dict)
    max_learned: int = 65536  # learn.max_entries: cap on each host's learned table (README, Tenant security)


# ---------------------------------------------------------------------------------------------
# Building the model and the semantic checks


def default_iface(port_name: str) -> str:
    """Interface names are limited to 15 characters (IFNAMSIZ); Neutron uses tap + id prefix too
    (_build inlines this)."""
    return ("tap" + port_name)[:15]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while hundreds of thousands of acyclic objects are made: Python
    would scan them again and again as they accumulate (about a fifth of loading and rendering)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_topology(path: str | Path) -> Topology:
    with gc_paused():
        return load_topology_data(read_document(path), source=str(path))


def load_topology_data(data: Any, source: str = "<topology>") -> Topology:
    problems = schema_problems(data, source)
    if problems:
        raise TopologyError(problems)
    topo = _build(data, source)
    problems = semantic_problems(topo)
    if problems:
        raise TopologyError(problems)
    return topo


def _dpid(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def _build(data: dict[str, Any], source: str) -> Topology:
    learn = data.get("learn", {})
    hard, idle = learn.get("hard_timeout", 300), learn.get("idle_timeout", 0)
    hosts = {
        name: Host(
            name=name,
            vtep=h["vtep"],
            datapath_type=h.get("datapath_type", "system"),
            bridge_int=h.get("bridges", {}).get("int", "br-int"),
            bridge_tun=h.get("bridges", {}).get("tun", "br-tun"),
            dpid_int=_dpid(h.get("datapath_ids", {}).get("int")),
            dpid_tun=_dpid(h.get("datapath_ids", {}).get("tun")),
            ovsdb=h.get("ovsdb"),
        )
        for name, h in data["hosts"].items()
    }
    networks = {
        name: Network(
            name=name,
            vni=n["vni"],
            tunnel=n.get("tunnel", "vxlan"),
            mode=n.get("mode", "learn"),
            subnet=n.get("subnet"),
            gateway=n.get("gateway"),
            vlan=n.get("vlan"),
            hard_timeout=n.get("hard_timeout", hard),
            idle_timeout=idle,
        )
        for name, n in data["networks"].items()
    }
    # positional tuple.__new__: a third of the time of Port(name=..., ...) at 100,000 ports
    new, get = tuple.__new__, dict.get
    ports = {
        name: new(Port, (
            name, p["host"], p["network"], p["mac"].lower(), get(p, "ip"),
            str(ipaddress.IPv6Address(p["ipv6"])) if "ipv6" in p else None,
            get(p, "iface") or ("tap" + name)[:15], get(p, "ofport"),
            canonical_allowed(p["allowed_addresses"]) if "allowed_addresses" in p else (),
        ))
        for name, p in (data.get("ports") or {}).items()
    }
    ctl = data.get("controller", {})
    routers = build_routers(data.get("routers"), {n.name: n.gateway for n in networks.values()})
    return Topology(source, hosts, networks, ports, ctl.get("openflow"), ctl.get("inactivity_probe_ms"), routers,
                    learn.get("max_entries", 65536))


def semantic_problems(topo: Topology) -> list[Problem]:
    """Checks the schema cannot express. Each names the field that is wrong (the later of two)."""
    src = topo.source
    out: list[Problem] = []

    def dup(kind: str, items: Iterable[tuple[str, Any, Any]]) -> None:
        seen: dict[Any, str] = {}
        for path, key, shown in items:
            if key in seen:
                out.append(Problem(src, path, f"{kind} already used by {seen[key]}", shown))
            else:
                seen[key] = path.split(".")[1]

    dup("VNI", ((f"networks.{n.name}.vni", n.vni, n.vni) for n in topo.networks.values()))
    dup("VTEP address", ((f"hosts.{h.name}.vtep", h.vtep, h.vtep) for h in topo.hosts.values()))
    for h in topo.hosts.values():
        if h.bridge_int == h.bridge_tun:
            out.append(Problem(src, f"hosts.{h.name}.bridges.tun", "must differ from the integration bridge", h.bridge_tun))
        addr = ipaddress.IPv4Address(h.vtep)
        if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"):
            out.append(Problem(src, f"hosts.{h.name}.vtep", "not a usable unicast VTEP address", h.vtep))

    subnets: dict[str, ipaddress.IPv4Network] = {}
    for n in topo.networks.values():
        if n.subnet is not None:
            try:
                subnets[n.name] = ipaddress.IPv4Network(n.subnet, strict=True)
            except ValueError as exc:
                out.append(Problem(src, f"networks.{n.name}.subnet", f"not a valid IPv4 subnet: {exc}", n.subnet))
                continue
        if n.gateway is not None:
            if n.subnet is None:
                out.append(Problem(src, f"networks.{n.name}.gateway", "a gateway needs a subnet", n.gateway))
            elif n.name in subnets and ipaddress.IPv4Address(n.gateway) not in subnets[n.name]:
                out.append(Problem(src, f"networks.{n.name}.gateway", f"not inside subnet {n.subnet}", n.gateway))

    hosts, networks = topo.hosts, topo.networks
    # Per-port work runs in C (map, itemgetter, set) where it can: this is 100,000 ports in bench/.
    ports = list(topo.ports.values())
    clean = _ports_clean(topo, ports)
    if not clean:  # a loop once per port, only to word what is wrong
        out += _port_problems(topo)
    out += _address_problems(topo, subnets, list(compress(ports, map(any, map(_ADDRESSES, ports)))))
    out += allowed_problems(topo)
    pinned_nets = {n.name for n in networks.values() if n.vlan is not None}
    # (host, network) pairs, needed only when a host could run out of VLANs or tunnel ports
    needed = pinned_nets or len(networks) > MAX_LOCAL_VLANS or 3 * (len(hosts) - 1) > len(TUNNEL_OFPORTS)
    pairs = set(map(_HOST_NET, ports)) if needed else set()
    if not clean:
        pairs = {(h, n) for h, n in pairs if h in hosts and n in networks}

    # Local VLAN space: at most 4094 networks on one host, and pinned VLANs must not collide there.
    for host, count in sorted(Counter(map(itemgetter(0), pairs)).items()):
        if count > MAX_LOCAL_VLANS:
            msg = f"has ports on {count} networks; at most {MAX_LOCAL_VLANS} fit in its local VLAN space"
            out.append(Problem(src, f"hosts.{host}", msg, count))
    pinned_on: dict[str, list[str]] = {}
    for host, net in pairs if pinned_nets else ():
        if net in pinned_nets:
            pinned_on.setdefault(host, []).append(net)
    for host, nets in sorted(pinned_on.items()):
        pinned: dict[int, str] = {}
        for name in sorted(nets):
            vlan = networks[name].vlan
            assert vlan is not None
            if vlan in pinned:
                msg = f"local VLAN already pinned by network {pinned[vlan]}, which shares host {host}"
                out.append(Problem(src, f"networks.{name}.vlan", msg, vlan))
            else:
                pinned[vlan] = name
    out += _capacity_problems(topo, ports, pairs)
    if topo.routers:
        out += router_problems(topo, subnets)
    # de-duplicate (the same pinned clash can show on several hosts)
    unique: dict[str, Problem] = {}
    for problem in out:
        unique.setdefault(str(problem), problem)
    return sorted(unique.values(), key=lambda problem: problem.path)


def _capacity_problems(topo: Topology, ports: list[Port], pairs: set[tuple[str, str]]) -> list[Problem]:
    """Limits the switch's numbering cannot exceed, so graph.py's allocators always find a value."""
    src, out = topo.source, []
    for host, n in sorted(Counter(map(_HOST, ports)).items()):
        if host in topo.hosts and n > len(VM_OFPORTS):
            out.append(Problem(src, f"hosts.{host}", f"has {n} ports; at most {len(VM_OFPORTS)} fit on its integration bridge "
                                                       f"(OpenFlow ports {VM_OFPORTS.start}-{VM_OFPORTS.stop - 1})", n))
    if 3 * (len(topo.hosts) - 1) > len(TUNNEL_OFPORTS):  # one tunnel per remote host and tunnel type
        per_host: dict[str, set[str]] = {}
        for host, net in pairs:
            per_host.setdefault(host, set()).add(net)
        hosts_of: dict[str, set[str]] = {}
        for host, nets in per_host.items():
            for net in nets:
                hosts_of.setdefault(net, set()).add(host)
        memo: dict[frozenset[str], int] = {}  # hosts on the same networks have as many peers
        for host, nets in sorted(per_host.items()):
            if sum(len(hosts_of[net]) - 1 for net in nets) <= len(TUNNEL_OFPORTS):
                continue
            key = frozenset(nets)
            if key not in memo:
                by_type: dict[str, set[str]] = {}
                for net in nets:
                    by_type.setdefault(topo.networks[net].tunnel, set()).update(hosts_of[net])
                memo[key] = sum(len(hs) for hs in by_type.values())
            peers = memo[key] - len({topo.networks[net].tunnel for net in nets})  # the host itself, once per type
            if peers > len(TUNNEL_OFPORTS):
                msg = (f"needs {peers} tunnel ports; at most {len(TUNNEL_OFPORTS)} fit on its tunnel bridge "
                       f"(OpenFlow ports {TUNNEL_OFPORTS.start}-{TUNNEL_OFPORTS.stop - 1})")
                out.append(Problem(src, f"hosts.{host}", msg, peers))
    return out


def _ports_clean(topo: Topology, ports: list[Port]) -> bool:
    """Whether _port_problems would find nothing, in set operations (0.06 s for 100,000 ports)."""
    n = len(ports)
    if not (set(map(_HOST, ports)) <= topo.hosts.keys() and set(map(_NET, ports)) <= topo.networks.keys()):
        return False
    macs = set(map(_MAC, ports))  # lower case: multicast when the second hex digit is odd
    if "00:00:00:00:00:00" in macs or not set("13579bdf").isdisjoint(map(itemgetter(1), macs)):
        return False
    # unique MACs (interface names) overall are unique per network (host): the common case, cheaper
    if len(macs) != n and len(set(map(_NET_MAC, ports))) != n:
        return False
    ifaces = set(map(_IFACE, ports))
    if len(ifaces) != n and len(set(map(_HOST_IFACE, ports))) != n:
        return False
    reserved = {"patch-tun", "patch-int"} | {b for h in topo.hosts.values() for b in (h.bridge_int, h.bridge_tun)}
    return reserved.isdisjoint(ifaces)


def _port_problems(topo: Topology) -> list[Problem]:
    """Each port's references, MAC and interface name; the later of two clashing ports is named."""
    src, out = topo.source, []
    mac_owner: dict[tuple[str, str], str] = {}
    iface_owner: dict[tuple[str, str], str] = {}
    reserved = {h.name: {h.bridge_int, h.bridge_tun, "patch-tun", "patch-int"} for h in topo.hosts.values()}
    hosts, networks = topo.hosts, topo.networks
    for p in topo.ports.values():
        name, host, network, mac = p.name, p.host, p.network, p.mac
        if host not in hosts:
            out.append(Problem(src, f"ports.{name}.host", "unknown host", host))
        if network not in networks:
            out.append(Problem(src, f"ports.{name}.network", "unknown network", network))
        if int(mac[:2], 16) & 1:
            out.append(Problem(src, f"ports.{name}.mac", "multicast MAC address cannot be a port's address", mac))
        elif mac == "00:00:00:00:00:00":
            out.append(Problem(src, f"ports.{name}.mac", "all-zero MAC address", mac))
        owner = mac_owner.setdefault((network, mac), name)
        if owner != name:
            out.append(Problem(src, f"ports.{name}.mac", f"MAC already used in network {network} by port {owner}", mac))
        owner = iface_owner.setdefault((host, p.iface), name)
        if owner != name:
            hint = "; set ports.<name>.iface" if p.iface == default_iface(name) else ""
            out.append(Problem(src, f"ports.{name}.iface", f"interface name already used on host {host} by port {owner}{hint}", p.iface))
        if p.iface in reserved.get(host, ()):
            out.append(Problem(src, f"ports.{name}.iface", "clashes with a bridge or patch port name", p.iface))
    return out


def _address_problems(topo: Topology, subnets: dict[str, ipaddress.IPv4Network], ports: list[Port]) -> list[Problem]:
    """IPv4 (inside the subnet, unique per network), IPv6 and pinned ofports of the ports that have them."""
    src, out, networks = topo.source, [], topo.networks
    ip_owner: dict[tuple[str, str], str] = {}
    ip6_owner: dict[tuple[str, str], str] = {}
    ofport_owner: dict[tuple[str, int], str] = {}
    ranges = {name: (int(n.network_address), int(n.broadcast_address)) for name, n in subnets.items()}
    for p in ports:
        name, host, network = p.name, p.host, p.network
        if p.ip is not None:
            if network in subnets:
                net = subnets[network]
                lo, hi = ranges[network]
                ip = ip4_int(p.ip)  # the schema checked the format; ipaddress here cost 30 us per port
                if not lo <= ip <= hi:
                    out.append(Problem(src, f"ports.{name}.ip", f"not inside subnet {net} of network {network}", p.ip))
                elif net.prefixlen < 31 and ip in (lo, hi):
                    out.append(Problem(src, f"ports.{name}.ip", f"is the network or broadcast address of {net}", p.ip))
                elif p.ip == networks[network].gateway:
                    out.append(Problem(src, f"ports.{name}.ip", f"is the gateway of network {network}", p.ip))
            owner = ip_owner.setdefault((network, p.ip), name)
            if owner != name:
                out.append(Problem(src, f"ports.{name}.ip", f"IP already used in network {network} by port {owner}", p.ip))
        if p.ipv6 is not None:
            addr6 = ipaddress.IPv6Address(p.ipv6)
            if addr6.is_multicast or addr6.is_unspecified or addr6.is_loopback:
                out.append(Problem(src, f"ports.{name}.ipv6", "not a unicast address", p.ipv6))
            owner = ip6_owner.setdefault((network, p.ipv6), name)
            if owner != name:
                out.append(Problem(src, f"ports.{name}.ipv6", f"IPv6 address already used in network {network} by port {owner}", p.ipv6))
        if p.ofport is not None:
            owner = ofport_owner.setdefault((host, p.ofport), name)
            if owner != name:
                out.append(Problem(src, f"ports.{name}.ofport", f"OpenFlow port already used on host {host} by port {owner}", p.ofport))
    return out
