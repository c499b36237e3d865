"""What every table function of one host needs: the host's facts and its tables by name.

`HostFacts` is the base the table modules (tunnel.py, integration.py) extend: per-host VLANs,
OpenFlow port numbers, tunnels and ports from the graph, and the declared pipelines, so a table
function names a table (`self.tun["flood"]`) and never a number.
"""

from __future__ import annotations

from typing import Any

from .. import flow as F
from ..fields import ND_ADVERT, OFPVID_PRESENT
from ..graph import TopologyGraph, Tunnel
from ..model import Network, Port
from ..pipeline import Pipelines

NA_FLAGS_SOLICITED_OVERRIDE = 0x60000000  # nd_reserved: S and O set, R clear (not a router)
ND_OPTION_TARGET_LL = 2  # nd_options_type of a target link-layer address option
# The ND responder's rewrite of a solicitation into an advertisement (before the goto to nd_reply).
NA_FROM_NS = (F.SetField("icmpv6_type", ND_ADVERT), F.SetField("icmpv6_code", 0),
              F.SetField("nd_reserved", NA_FLAGS_SOLICITED_OVERRIDE), F.SetField("nd_options_type", ND_OPTION_TARGET_LL))


def vid(vlan: int) -> int:
    return OFPVID_PRESENT | vlan


def flood_group_id(net: Network) -> int:
    """A network's flood group is numbered by its VNI: unique, stable, readable in dumps."""
    return net.vni


class HostFacts:
    """The per-host facts (VLANs, ofports, tunnels) and tables the table functions share."""

    def __init__(self, graph: TopologyGraph, host: str, pipelines: Pipelines | None = None):
        self.graph = graph
        self.topo = graph.topo
        self.host = self.topo.hosts[host]
        self.vlans = graph.local_vlans(host)
        self.vm_ofports = graph.vm_ofports(host)
        self.tunnels = graph.tunnels(host)
        self.tunnel_by_key = {(t.remote, t.type): t for t in self.tunnels}
        self.networks = graph.networks_on(host)  # sorted by VNI
        self.ports = graph.ports_on(host)
        self.local_ports: dict[str, list[Port]] = {}
        for port in self.ports:
            self.local_ports.setdefault(port.network, []).append(port)
        self.pipelines = pipelines or Pipelines.load()
        self.tun, self.int = self.pipelines.tun, self.pipelines.int  # tables by name: tun["flood"]
        self.na_from_ns = (*NA_FROM_NS, self.tun["nd_reply"].goto())
        learn_into = self.tun["learn"].learn_into
        if learn_into is None:
            raise ValueError("br-tun's learn table must declare learn_into")
        self.learn_into: int = learn_into

    # -- shared facts ------------------------------------------------------------------------------
    def remote_tunnels(self, net: Network) -> list[Tunnel]:
        """The head-end replication list of a network, as tunnel ports (sorted by ofport)."""
        return sorted(
            (self.tunnel_by_key[(h, net.tunnel)] for h in self.graph.remote_hosts(self.host.name, net.name)),
            key=lambda t: t.ofport,
        )

    def has_senders(self, net: Network) -> bool:
        """Whether tunnels may bring this network's frames here: remote ports, or remote hosts
        that route into it."""
        return bool(self.graph.remote_senders(self.host.name, net.name))

    def has_remotes(self, net: Network) -> bool:
        return bool(self.graph.remote_hosts(self.host.name, net.name))


    def piece_key(self, net: Network) -> tuple[Any, ...]:
        """Everything a network's piece is built from (see host.HostCompiler.network_piece_steps):
        the network, its local VLAN, the tunnel port of each remote VTEP hosting it, its ports
        (all of them in l2pop mode, else the local ones), the local ports' OpenFlow numbers and
        whether remote hosts send into it."""
        local = tuple(self.local_ports.get(net.name, ()))
        ports = tuple(self.graph.ports_of(net.name)) if net.mode == "l2pop" else local
        return (net, self.vlans[net.name], tuple((t.remote, t.ofport) for t in self.remote_tunnels(net)),
                ports, tuple(self.vm_ofports[p.name] for p in local), self.has_senders(net))
