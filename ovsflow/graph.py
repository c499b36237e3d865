"""The topology as a graph, and the facts the compiler derives from it.

A networkx graph with host, network and port nodes answers the overlay's questions in one place:
which networks live on a host, which remote VTEPs host them (the head-end replication list of seed
004), which tunnels a host needs. Identifiers the switch sees (local VLANs, OpenFlow port numbers,
datapath ids) are allocated here: each has a preferred value derived from a stable key (VNI, port
name, remote VTEP), and on a collision the later item (in key order) takes the next free value. That
alone cannot keep numbers across edits (a newcomer that sorts first takes an existing item's value),
so a graph may be given each host's previous allocation (allocation.py): remembered numbers are kept
for items that still exist, and only newcomers are placed. Without memory the result is a pure
function of the topology.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import networkx as nx

from .allocation import Allocation
from .limits import TUNNEL_OFPORTS, VM_OFPORTS
from .model import Network, Port, Topology
from .routers import Router

# OpenFlow port number plan (ofport_request). 1 is the patch port on both bridges; VM ports take
# VM_OFPORTS on br-int and tunnels TUNNEL_OFPORTS on br-tun (model.py refuses topologies that
# need more, so the allocators below always find a free value for a validated topology).
PATCH_OFPORT = 1
K = TypeVar("K", bound=Hashable)
__all__ = ["PATCH_OFPORT", "TUNNEL_OFPORTS", "VM_OFPORTS", "Allocation", "TopologyGraph", "allocate"]


def allocate(items: Iterable[tuple[K, int]], space: range, pinned: Mapping[K, int] | None = None,
             remembered: Mapping[K, int] | None = None) -> dict[K, int]:
    """Give each key a value from `space`: its pinned value, else its remembered one, else its
    preferred one, else the next free.

    `items` are (key, preferred) pairs, processed in the order given (callers pass a stable order).
    A remembered value is kept when it is in `space` and no pinned value claims it, so an item that
    existed before keeps its number whatever joined; only newcomers (and items whose memory was
    lost) take preferred-or-next-free. Without memory a collision moves the later key.
    """
    result: dict[K, int] = dict(pinned or {})
    taken = set(result.values())
    size, start = len(space), space.start
    if remembered:
        items = list(items)
        for key, _ in items:
            value = remembered.get(key)
            if value is not None and key not in result and value in space and value not in taken:
                taken.add(value)
                result[key] = value
    for key, preferred in items:
        if key in result:
            continue
        slot = (preferred - start) % size
        for _ in range(size):
            value = start + slot
            if value not in taken:
                break
            slot = (slot + 1) % size
        else:
            raise ValueError(f"no free value in {space} for {key!r}")
        taken.add(value)
        result[key] = value
    return result


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def vtep_hex(ip: str) -> str:
    return f"{int(ipaddress.IPv4Address(ip)):08x}"


def tunnel_port_name(tunnel: str, remote_ip: str) -> str:
    """Neutron's convention (`vxlan-c000020c`): type + remote IP in hex, always <= 15 characters."""
    return f"{tunnel}-{vtep_hex(remote_ip)}"


@dataclass(frozen=True)
class Tunnel:
    """One tunnel port on a host's br-tun: to `remote` over `type`."""

    name: str
    type: str
    remote: str  # remote host name
    remote_ip: str
    ofport: int


class TopologyGraph:
    """Hosts, networks and ports as a networkx graph; per-host queries the compiler needs."""

    def __init__(self, topo: Topology, focus: str | None = None, memory: Mapping[str, Allocation] | None = None):
        """`focus`: build only the part of the graph one host's program depends on (its networks
        and every host on them), which is what rendering a single host needs. `memory`: per host,
        the allocation its switch carries (see `allocate`); hosts without one are numbered afresh."""
        self.topo = topo
        self.focus = focus
        self.memory: Mapping[str, Allocation] = memory if memory is not None else {}  # read live
        # Ports hang off (host, network) pairs; only the host <-> network graph is a networkx graph
        # (an edge when a host has at least one port on a network), which keeps it small: at
        # 100,000 ports a graph with a node per port took 2.2 s to build, this one a fraction.
        self._ports_by_host: dict[str, list[Port]] = {h: [] for h in topo.hosts}
        self._ports_by_net: dict[str, list[Port]] = {n: [] for n in topo.networks}
        for p in topo.ports.values():
            self._ports_by_host[p.host].append(p)
            self._ports_by_net[p.network].append(p)
        hn = nx.Graph()
        hn.add_nodes_from((("host", h) for h in topo.hosts), kind="host")
        hn.add_nodes_from((("net", n) for n in topo.networks), kind="net")
        # Routers: which network joins which router; a host routes for a router when it has a port
        # on one of its networks (distributed) or is its host (centralized).
        self._router_of: dict[str, Router] = {n: r for r in topo.routers.values() for n in r.networks if n in topo.networks}
        self._routing_hosts: dict[str, tuple[str, ...]] = {}
        if focus is None:
            pairs = {(p.host, p.network) for p in topo.ports.values()}
        else:
            nets = {p.network for p in self._ports_by_host[focus]}
            nets |= {n for r in topo.routers.values() if r.host == focus or nets.intersection(r.networks)
                     for n in r.networks if n in topo.networks}
            pairs = {(p.host, n) for n in nets for p in self._ports_by_net[n]}
        hn.add_edges_from((("host", h), ("net", n)) for h, n in pairs)
        self.g = hn
        self._hosts_of: dict[str, list[str]] = {}
        self._sorted_by_net: dict[str, tuple[Port, ...]] = {}

    # -- basic relations ----------------------------------------------------------------------
    def ports_on(self, host: str) -> list[Port]:
        return sorted(self._ports_by_host[host], key=lambda p: p.name)

    def networks_on(self, host: str) -> list[Network]:
        return sorted((self.topo.networks[n] for _, n in self.g[("host", host)]), key=lambda n: n.vni)

    def hosts_of(self, network: str) -> list[str]:
        hosts = self._hosts_of.get(network)
        if hosts is None:
            hosts = self._hosts_of[network] = sorted(h for _, h in self.g[("net", network)])
        return hosts

    def ports_of(self, network: str) -> tuple[Port, ...]:
        """A network's ports by name (sorted once per graph: the compiler asks for each l2pop
        network several times per host)."""
        ports = self._sorted_by_net.get(network)
        if ports is None:
            ports = self._sorted_by_net[network] = tuple(sorted(self._ports_by_net[network], key=lambda p: p.name))
        return ports

    def remote_hosts(self, host: str, network: str) -> list[str]:
        """The head-end replication list: the other VTEPs with a port on this network."""
        return [h for h in self.hosts_of(network) if h != host]

    # -- routers -------------------------------------------------------------------------------
    def router_of(self, network: str) -> Router | None:
        return self._router_of.get(network)

    def routing_hosts(self, router: str) -> tuple[str, ...]:
        """Where a router routes: every host with a port on one of its networks (distributed), or
        its host (centralized)."""
        hosts = self._routing_hosts.get(router)
        if hosts is None:
            r = self.topo.routers[router]
            if r.mode == "centralized":
                hosts = (r.host,) if r.host else ()
            else:
                hosts = tuple(sorted({p.host for n in r.networks for p in self._ports_by_net.get(n, ())}))
            self._routing_hosts[router] = hosts
        return hosts

    def attached(self, network: str) -> list[str]:
        """Hosts that send or receive a network's frames: its ports' hosts, and the hosts that
        route into it."""
        r = self._router_of.get(network)
        if r is None:
            return self.hosts_of(network)
        return sorted(set(self.hosts_of(network)).union(self.routing_hosts(r.name)))

    def remote_senders(self, host: str, network: str) -> list[str]:
        """The other hosts whose tunnels may carry this network's frames to `host`."""
        return [h for h in self.attached(network) if h != host]

    def routed_only(self, host: str) -> list[Network]:
        """Networks `host` routes into without having a port on them (sorted by VNI)."""
        mine = {n for _, n in self.g[("host", host)]}
        nets = {n for r in self.topo.routers.values() if host in self.routing_hosts(r.name)
                for n in r.networks if n in self.topo.networks and n not in mine}
        return sorted((self.topo.networks[n] for n in nets), key=lambda n: n.vni)

    def routers_on(self, host: str) -> list[Router]:
        """Routers with a network on `host` (a port on it, or routed into), by name."""
        nets = {n.name for n in self.networks_on(host)} | {n.name for n in self.routed_only(host)}
        return sorted((r for r in self.topo.routers.values() if nets.intersection(r.networks)), key=lambda r: r.name)

    def peers(self, host: str) -> dict[tuple[str, str], list[str]]:
        """(remote host, tunnel type) -> the networks shared over that tunnel."""
        out: dict[tuple[str, str], list[str]] = {}
        for net in (*self.networks_on(host), *self.routed_only(host)):
            for remote in self.remote_senders(host, net.name):
                out.setdefault((remote, net.tunnel), []).append(net.name)
        return out

    # -- allocations --------------------------------------------------------------------------
    def local_vlans(self, host: str) -> dict[str, int]:
        """Local VLAN per network on this host (a port on it, or routed into): pinned `vlan`, else
        remembered, else preferred ((VNI-1) mod 4094)+1."""
        nets = sorted((*self.networks_on(host), *self.routed_only(host)), key=lambda n: n.vni)
        pinned = {n.name: n.vlan for n in nets if n.vlan is not None}
        mem = self.memory.get(host)
        return allocate(((n.name, n.vni) for n in nets), range(1, 4095), pinned,
                        mem.vlans if mem else None)

    def vm_ofports(self, host: str) -> dict[str, int]:
        ports = self.ports_on(host)
        pinned = {p.name: p.ofport for p in ports if p.ofport is not None}
        mem = self.memory.get(host)
        return allocate(((p.name, stable_hash(p.name)) for p in ports), VM_OFPORTS, pinned,
                        mem.vm_ofports if mem else None)

    def tunnels(self, host: str) -> list[Tunnel]:
        keys = sorted(self.peers(host))
        names = {k: tunnel_port_name(k[1], self.topo.hosts[k[0]].vtep) for k in keys}
        mem = self.memory.get(host)
        remembered = {k: mem.tunnel_ofports[n] for k, n in names.items() if n in mem.tunnel_ofports} if mem else None
        ofports = allocate(((k, stable_hash(names[k])) for k in keys), TUNNEL_OFPORTS, None, remembered)
        return sorted(
            (Tunnel(names[k], k[1], k[0], self.topo.hosts[k[0]].vtep, ofports[k]) for k in keys),
            key=lambda t: t.ofport,
        )

    def allocation(self, host: str) -> Allocation:
        """The host's numbers as one value, to remember for the next compile."""
        return Allocation(self.local_vlans(host), self.vm_ofports(host), {t.name: t.ofport for t in self.tunnels(host)})

    def datapath_ids(self, host: str) -> tuple[int, int]:
        """(br-int, br-tun) dpids: given in the topology, else 0x1/0x2 << 32 | VTEP IPv4 (unique)."""
        h = self.topo.hosts[host]
        ip = int(ipaddress.IPv4Address(h.vtep))
        return (h.dpid_int or (0x1 << 32 | ip), h.dpid_tun or (0x2 << 32 | ip))

    def fingerprint(self, host: str) -> tuple[Any, ...]:
        """Everything the host's program is compiled from, as one hashable value, without compiling.

        Two topologies that give a host the same fingerprint give it the same program (a property
        test holds the compiler to that), so the live controller recompiles only the hosts an edit
        touches: the host itself, its ports, the networks it is on, who else hosts them (and where
        their VTEPs are), for l2pop networks every remote port's addresses, and the routers it
        touches with every port of their networks.
        """
        hosts = self.topo.hosts
        nets = []
        for net in self.networks_on(host):
            members = tuple((h, hosts[h]) for h in self.hosts_of(net.name))
            senders = tuple((h, hosts[h]) for h in self.attached(net.name))
            remote_ports = tuple(self.ports_of(net.name)) if net.mode == "l2pop" else ()
            nets.append((net, members, senders, remote_ports))
        routers = tuple((r, self.routing_hosts(r.name),
                         tuple((self.topo.networks[n], tuple((h, hosts[h]) for h in self.attached(n)), self.ports_of(n))
                               for n in r.networks if n in self.topo.networks))
                        for r in self.routers_on(host))
        return (hosts[host], tuple(self.ports_on(host)), tuple(nets), routers)
