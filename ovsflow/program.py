"""What the compiler hands to the edges: per host, the bridges, their ports and their flows.

These are plain values. `render` turns them into an ovs-vsctl + ovs-ofctl script, the live app into
OVSDB transactions and OpenFlow messages, the lab into private OVS instances, the evaluator into
tables to push frames through. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .allocation import Allocation
from .flow import Flow, GroupEntry

# Every flow ovsflow installs carries a cookie whose upper 32 bits are "ovsf" in ASCII, so ovsflow
# can tell its own flows from anyone else's (`cookie=0x6f76736600000000/0xffffffff00000000`).
COOKIE_BASE = 0x6F767366_00000000
COOKIE_MASK = 0xFFFFFFFF_00000000
COOKIE_STATIC = COOKIE_BASE | 0x0  # the compiled program
COOKIE_LEARNED = COOKIE_BASE | 0x1  # flows that learn() adds in the switch

# The tunnel port types ovsflow creates (OVS Interface types); the topology schema offers the same.
TUNNEL_TYPES = ("gre", "vxlan", "geneve")
# The OpenFlow versions every ovsflow bridge speaks: 1.0 for ovs-ofctl's defaults, 1.3 for Ryu and
# the ONF bundle extension, 1.4 for bundles and 1.5 for ovs-ofctl's newest syntax.
OPENFLOW_VERSIONS = ("OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15")


@dataclass(frozen=True)
class PortConfig:
    """One OVSDB port/interface on a bridge, with the OpenFlow port number ovsflow requests."""

    name: str
    ofport: int
    type: str = ""  # "" (system/veth/internal handled by the lab), "patch", or one of TUNNEL_TYPES
    options: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs for Interface options
    comment: str = ""  # e.g. "VM vm1 (blue)" or "tunnel to hv2 192.0.2.12"


@dataclass(frozen=True)
class BridgeProgram:
    name: str
    role: str  # "int" or "tun": which pipeline in pipelines/ it runs
    datapath_type: str
    datapath_id: int
    ports: tuple[PortConfig, ...]
    flows: tuple[Flow, ...]  # sorted by Flow.sort_key()
    groups: tuple[GroupEntry, ...] = ()
    # The same flows as compiled: host-wide ones, then one tuple per network. An unchanged network
    # gives back the identical tuple object on a recompile with a memo, so consumers (the live
    # controller's encoder) can cache work per part. Not part of the value.
    parts: tuple[tuple[Flow, ...], ...] = field(default=(), compare=False, repr=False)
    # br-tun: (learned table id, most learned entries it may hold); render and ovsdb-ensure set
    # that table's Flow_Table (flow_limit, overflow_policy=evict, groups: see flow_table_settings).
    learn_limit: tuple[int, int] | None = None

    def port(self, name: str) -> PortConfig:
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class HostProgram:
    host: str
    vtep: str
    bridges: tuple[BridgeProgram, ...]  # br-int first, then br-tun
    local_vlans: dict[str, int] = field(default_factory=dict)  # network name -> local VLAN id
    # Every number the program chose (VLANs, VM and tunnel ofports), to remember for the next
    # compile of this host so an edit renumbers nothing (graph.allocate). Derived: not compared.
    allocation: Allocation = field(default_factory=Allocation, compare=False)

    def bridge(self, role: str) -> BridgeProgram:
        for b in self.bridges:
            if b.role == role:
                return b
        raise KeyError(role)



LEARNED_GROUPS = ("NXM_OF_VLAN_TCI[0..11]",)  # eviction takes from the network with the most entries


def flow_table_settings(learn_limit: tuple[int, int]) -> tuple[int, int, tuple[str, ...]]:
    """(table id, flow_limit, groups) of the Flow_Table (overflow_policy=evict, name "learned")
    that caps a learned table at `entries` learned flows: its one permanent flow (the table miss)
    counts against flow_limit too; OVS evicts only flows with a timeout, the one expiring soonest
    in the largest group (ovs-vswitchd.conf.db(5), Flow_Table)."""
    table, entries = learn_limit
    return table, entries + 1, LEARNED_GROUPS
