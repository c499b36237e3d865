"""br-tun's table functions: tunnel key <-> local VLAN, learn(), l2pop unicast, ARP/ND responder,
flooding by group, and the hints for a moved VM. One function per table concern, as Neutron's
br_tun.py has them; host-wide ones take nothing, per-network ones take the network and return only
its flows.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import flow as F
from ..fields import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV6,
    IPPROTO_ICMPV6,
    MULTICAST_BIT,
    ND_ADVERT,
    ND_SOLICIT,
    ipv4,
    ipv6,
    mac,
)
from ..flow import Flow
from ..graph import PATCH_OFPORT
from ..model import Network
from ..pipeline import Pipelines
from ..program import COOKIE_LEARNED, COOKIE_STATIC
from .facts import HostFacts, flood_group_id, vid
from .pieces import make

MULTICAST = (MULTICAST_BIT, MULTICAST_BIT)  # dl_dst=01:00:00:00:00:00/01:00:00:00:00:00
UNICAST = (0, MULTICAST_BIT)

# Actions every responder flow shares (one object each: cheaper to build, encode and check).
ARP_REPLY_HEAD = (F.Move("dl_src", "dl_dst"),)
ARP_REPLY_MID = (F.SetField("arp_op", ARP_REPLY), F.Move("arp_sha", "arp_tha"), F.Move("arp_spa", "arp_tpa"))
BACK = F.Output(F.IN_PORT)

# br-tun's learn_into table (learned) holds the remote MACs learn() wrote and the controller's hints
# for moved VMs, nothing else: its Flow_Table cap evicts only those. The program's own entries
# (l2pop) come first, in table unicast. The live controller deletes learned entries there.
LEARN_TABLE: int = Pipelines.load().tun["learn"].learn_into or 0
PRIO_L2POP = 2
PRIO_LEARNED = 1
# A moved VM's hint outlives OVS's datapath flows from before the move (other_config:max-idle,
# 10 s by default): afterwards nothing can re-apply the old learn() any more.
HINT_MIN_S = 10


class TunTables(HostFacts):
    """br-tun's flows of one host."""

    # -- br-tun: host-wide -------------------------------------------------------------------------
    def tun_classify(self) -> Iterable[Flow]:
        yield make(self.tun["classify"], 1, {"in_port": PATCH_OFPORT}, [self.tun["from_int"].goto()])
        for t in self.tunnels:
            yield make(self.tun["classify"], 1, {"in_port": t.ofport}, [self.tun.tunnel_table(t.type).goto()])

    def tun_from_int(self) -> Iterable[Flow]:
        yield make(self.tun["from_int"], 1, {"dl_dst": UNICAST}, [self.tun["unicast"].goto()])
        yield make(self.tun["from_int"], 1, {"dl_dst": MULTICAST}, [self.tun["flood"].goto()])

    def tun_learn(self) -> Iterable[Flow]:
        """Seed 003's learn(): remember where a remote MAC lives, per VLAN; learned flows strip the VLAN,
        set the tunnel key the frame came with and output to the tunnel port it came from."""
        groups: dict[tuple[int, int], list[Network]] = {}
        for net in self.networks:
            if self.has_senders(net):
                groups.setdefault((net.hard_timeout, net.idle_timeout), []).append(net)
        if not groups:
            return
        # The most common timeout pair is the catch-all; networks that differ get their own flow.
        default = max(groups, key=lambda k: (len(groups[k]), k))
        for timeouts, nets in sorted(groups.items()):
            learn = F.Learn(
                table=self.learn_into, priority=PRIO_LEARNED, cookie=COOKIE_LEARNED,
                hard_timeout=timeouts[0], idle_timeout=timeouts[1],
                specs=(
                    F.LearnSpec("match", "vlan_tci", None, 12),
                    F.LearnSpec("match", "dl_dst", "dl_src"),
                    F.LearnSpec("load", "vlan_tci", 0),
                    F.LearnSpec("load", "tun_id", "tun_id"),
                    F.LearnSpec("output", None, "in_port"),
                ),
            )
            actions: tuple[F.Action, ...] = (learn, F.Output(PATCH_OFPORT))
            if timeouts == default:
                yield make(self.tun["learn"], 1, {}, actions)
            else:
                for net in nets:
                    yield make(self.tun["learn"], 2, {"dl_vlan": self.vlans[net.name]}, actions)

    # -- br-tun: per network -----------------------------------------------------------------------
    def tun_key_to_vlan(self, net: Network) -> Iterable[Flow]:
        """Only networks this host shares with some other VTEP accept tunnel traffic; unknown keys drop."""
        if self.has_senders(net):
            yield make(
                self.tun.tunnel_table(net.tunnel), 1, {"tun_id": net.vni},
                [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[net.name])), self.tun["learn"].goto()],
            )

    def tun_unicast(self, net: Network) -> Iterable[Flow]:
        """l2pop: every remote port of an l2pop network pre-installed, above anything learned.
        (This is the one per-remote-VM loop: actions are shared values, built once per VTEP.)"""
        if net.mode != "l2pop":
            return
        vlan, pop, set_key = self.vlans[net.name], F.PopVlan(), F.SetField("tun_id", net.vni)
        table = self.tun["unicast"].id
        actions = {h: (pop, set_key, F.Output(self.tunnel_by_key[(h, net.tunnel)].ofport))
                   for h in self.graph.remote_hosts(self.host.name, net.name)}
        for port in self.graph.ports_of(net.name):
            if port.host != self.host.name:
                yield Flow(table, PRIO_L2POP, (("dl_vlan", vlan), ("dl_dst", mac(port.mac))), actions[port.host],
                           COOKIE_STATIC)

    def tun_arp_responder(self, net: Network) -> Iterable[Flow]:
        """l2pop (seed 002): ARP requests for known IPs never reach the underlay. A remote VM's IP is
        answered here, in the switch (reply built from the request, sent back where it came from);
        a local VM's IP is dropped here because br-int already delivered the request to that VM."""
        if net.mode != "l2pop" or not self.has_remotes(net):
            return
        vlan, responder = self.vlans[net.name], self.tun["arp_responder"]
        yield make(self.tun["from_int"], 2, {"dl_vlan": vlan, "dl_dst": BROADCAST, "dl_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST},
                   [responder.goto()])
        for port in self.graph.ports_of(net.name):
            if port.ip is None:
                continue
            match = {"dl_vlan": vlan, "dl_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ipv4(port.ip)}
            if port.host == self.host.name:
                yield make(responder, 1, match, [])
                continue
            addr = mac(port.mac)
            yield make(responder, 1, match, [  # eth_dst := eth_src, eth_src := addr, op := reply, swap, answer
                *ARP_REPLY_HEAD, F.SetField("eth_src", addr), *ARP_REPLY_MID,
                F.SetField("arp_sha", addr), F.SetField("arp_spa", ipv4(port.ip)), BACK,
            ])

    def tun_nd_responder(self, net: Network) -> Iterable[Flow]:
        """l2pop for IPv6, which Neutron does not do: a neighbour solicitation for a remote VM's
        address becomes an advertisement in the switch (two tables: OVS accepts nd_tll only on a
        frame already matched as an advertisement). Duplicate address detection (source ::) floods."""
        if net.mode != "l2pop" or not self.has_remotes(net):
            return
        icmp6 = {"dl_type": ETH_TYPE_IPV6, "nw_proto": IPPROTO_ICMPV6}
        vlan, responder = self.vlans[net.name], self.tun["arp_responder"]
        yield make(self.tun["from_int"], 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT}, [responder.goto()])
        yield make(responder, 2, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "ipv6_src": 0}, [self.tun["flood"].goto()])
        for port in self.graph.ports_of(net.name):
            if port.ipv6 is None:
                continue
            target = ipv6(port.ipv6)
            solicit = {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_SOLICIT, "nd_target": target}
            if port.host == self.host.name:
                yield make(responder, 1, solicit, [])
                continue
            yield make(responder, 1, solicit, self.na_from_ns)
            yield make(self.tun["nd_reply"], 1, {"dl_vlan": vlan, **icmp6, "icmpv6_type": ND_ADVERT, "nd_target": target}, [
                F.SetField("nd_tll", mac(port.mac)),
                F.Move("dl_src", "dl_dst"),
                F.SetField("eth_src", mac(port.mac)),
                F.Move("ipv6_src", "ipv6_dst"),
                F.SetField("ipv6_src", target),
                BACK,
            ])

    def tun_flood(self, net: Network) -> Iterable[Flow]:
        """Head-end replication (seed 004): one copy per VTEP hosting the network, none elsewhere.
        The list lives in a group (type all, a bucket per remote VTEP), so a VTEP joining or leaving
        a network is one group-mod and no flow changes."""
        if self.has_remotes(net):
            yield make(self.tun["flood"], 1, {"dl_vlan": self.vlans[net.name]}, [F.PopVlan(), F.Group(flood_group_id(net))])

    def tun_group(self, net: Network) -> F.GroupEntry | None:
        tunnels = self.remote_tunnels(net)
        if not tunnels:
            return None
        buckets = tuple(F.Bucket((F.SetField("tun_id", net.vni), F.Output(t.ofport))) for t in tunnels)
        return F.GroupEntry(flood_group_id(net), "all", buckets)

    def tun_moved(self, net: Network, moved: dict[int, str]) -> list[Flow]:
        """A learn network's VMs moved (MAC -> new host), as the live controller sees a topology
        edit: entries that send their frames to the new VTEP at once, above whatever learn()
        holds, carrying learn()'s cookie and timeouts (they are learned state the controller
        supplies, not program: reconcile keeps them and they expire like learned entries). OVS
        may re-apply learn() with the old VTEP from traffic it saw before the move; this masks
        that until those datapath flows are gone. l2pop networks have this in their program."""
        if net.mode == "l2pop" or not self.has_remotes(net):
            return []
        vlan, set_key = self.vlans[net.name], F.SetField("tun_id", net.vni)
        hard = max(net.hard_timeout, HINT_MIN_S) if net.hard_timeout else 0
        flows = [Flow.make(self.learn_into, PRIO_L2POP, {"dl_vlan": vlan, "dl_dst": mac},
                           (F.PopVlan(), set_key, F.Output(self.tunnel_by_key[(host, net.tunnel)].ofport)),
                           COOKIE_LEARNED, hard, net.idle_timeout)
                 for mac, host in sorted(moved.items()) if host != self.host.name]
        self.tun.check_all(flows)
        return flows
