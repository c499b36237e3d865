"""Lab 05 check (seed 002, L2 population): in the l2pop network (blue) the VTEP answers ARP itself,
so a VM learns a remote VM's MAC while the underlay carries zero encapsulated ARP frames; in the
flood-and-learn network (red) the same exchange, in the same capture, floods the ARP request to
every other VTEP hosting red. An IP the topology does not know still floods in blue."""

import re  # no `from __future__ import annotations`: test_labs loads this file without sys.modules,

# where dataclasses cannot resolve string annotations
from dataclasses import dataclass, field

from ovsflow.lab.capture import TunnelPacket
from ovsflow.lab.exercise import Exercise, main
from ovsflow.pipeline import Pipelines

UNICAST = Pipelines.load().tun["unicast"].id  # br-tun table of the pre-populated (l2pop) entries

HV = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}
VNI_BLUE, KEY_RED = 101, 102
UNKNOWN_IP = "198.51.100.99"  # in blue's subnet, but no port has it


@dataclass
class Exchange:
    """What one capture saw while blue and red VMs resolved a remote neighbour and pinged it."""

    pings: dict[str, bool] = field(default_factory=dict)  # "vm1->vm2" -> replied
    neighbour: dict[str, str] = field(default_factory=dict)  # "vm1->vm2" -> MAC in vm1's table
    arping: dict[str, str] = field(default_factory=dict)  # "vm1->vm3" -> MAC arping heard
    responder_hits: int = 0  # n_packets of hv1's table-21 answers, during the exchange
    packets: list[TunnelPacket] = field(default_factory=list)

    def on(self, kind: str, key: int) -> list[TunnelPacket]:
        return [p for p in self.packets if p.kind == kind and p.key == key]

    def arp(self, kind: str, key: int) -> list[TunnelPacket]:
        return [p for p in self.on(kind, key) if p.is_arp]


def neighbour_mac(lab: Exercise, port: str, ip: str) -> str:
    out = lab.run(port, "ip", "neigh", "show", ip, "dev", "eth0").stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else ""


def responder_hits(lab: Exercise, host: str) -> int:
    """Packets the ARP-responder entries of `host`'s table 21 answered (not the miss flow)."""
    tun = lab.state.hosts[host]["bridge_tun"]
    flows = lab.ovs(host).dump_flows(tun, "table=21,arp", stats=True)
    return sum(int(m.group(1)) for f in flows if "IN_PORT" in f and (m := re.search(r"n_packets=(\d+)", f)))


def cold(lab: Exercise) -> None:
    """No learned flows, no ARP caches, and no cached datapath flows (a megaflow cached before the
    learned flows were deleted would carry frames past learn() until OVS revalidates it)."""
    lab.forget()
    for host in lab.state.hosts:
        lab.ovs(host).appctl("dpctl/del-flows")


def arping(lab: Exercise, port: str, ip: str, count: int = 1) -> str:
    """MAC of the first reply `arping` heard from VM `port` asking for `ip` ("" if none)."""
    out = lab.run(port, "arping", "-c", str(count), "-w", str(count + 1), "-I", "eth0", ip).stdout
    m = re.search(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", out)
    return m.group(1).lower() if m else ""


def exchange(lab: Exercise) -> Exchange:
    """Cold caches, then under one underlay capture: vm1 (blue, hv1) pings vm2 and arpings vm3
    once; vm4 (red, hv1) pings vm5. Each ping starts with the kernel's broadcast ARP request."""
    cold(lab)
    ex = Exchange()
    hits0 = responder_hits(lab, "hv1")

    def traffic() -> None:
        for a, b in (("vm1", "vm2"), ("vm4", "vm5")):
            ex.pings[f"{a}->{b}"] = lab.ping(a, b, count=1)
            ex.neighbour[f"{a}->{b}"] = neighbour_mac(lab, a, lab.vm(b)["ip"])
        ex.arping["vm1->vm3"] = arping(lab, "vm1", lab.vm("vm3")["ip"])

    ex.packets = lab.capture(traffic)
    ex.responder_hits = responder_hits(lab, "hv1") - hits0
    return ex


def flood_unknown(lab: Exercise) -> list[TunnelPacket]:
    """vm1 asks for an IP no port of blue has: the responder has no entry, so the request floods."""
    return [p for p in lab.capture(lambda: arping(lab, "vm1", UNKNOWN_IP)) if p.is_arp]


def check(lab: Exercise) -> None:
    lab.say("step 1: cold start, then one capture while blue (l2pop) and red (learn) resolve a neighbour")
    ex = exchange(lab)
    vm = {p: lab.vm(p)["mac"] for p in ("vm1", "vm2", "vm3", "vm4", "vm5")}
    blue_all, red_all = ex.on("vxlan", VNI_BLUE), ex.on("gre", KEY_RED)
    lab.say(f"    captured {len(ex.packets)} tunnel frames: blue vni {VNI_BLUE}: {len(blue_all)} "
            f"({len(ex.arp('vxlan', VNI_BLUE))} ARP), red key {KEY_RED}: {len(red_all)} ({len(ex.arp('gre', KEY_RED))} ARP)")
    lab.expect(ex.pings == {"vm1->vm2": True, "vm4->vm5": True}, f"both pings work: {ex.pings}")
    lab.expect(ex.neighbour["vm1->vm2"] == vm["vm2"],
               f"vm1's neighbour table: {lab.vm('vm2')['ip']} is-at {ex.neighbour['vm1->vm2'] or '?'} (vm2's MAC)")
    lab.expect(ex.arping["vm1->vm3"] == vm["vm3"], f"arping vm1 -> vm3 answered with vm3's MAC ({ex.arping['vm1->vm3'] or 'none'})")
    lab.expect(ex.arp("vxlan", VNI_BLUE) == [], "blue (l2pop): ZERO encapsulated ARP frames on the underlay")
    lab.expect(any("echo request" in p.inner for p in blue_all),
               "... while the same capture saw blue's ICMP in vni 101 (the capture does see blue)")
    lab.expect(ex.responder_hits >= 2, f"hv1's ARP responder (table 21) answered {ex.responder_hits} requests")

    red_req = [p for p in ex.arp("gre", KEY_RED) if p.inner_src_mac == vm["vm4"] and p.inner_dst_mac == "ff:ff:ff:ff:ff:ff"]
    lab.expect(sorted(p.outer_dst for p in red_req) == [HV["hv2"], HV["hv3"]],
               f"red (learn): vm4's ARP request crossed the underlay once to each other red VTEP: "
               f"{sorted(p.outer_dst for p in red_req)}")
    red_rep = [p for p in ex.arp("gre", KEY_RED) if p.inner_src_mac == vm["vm5"]]
    lab.expect((HV["hv2"], HV["hv1"]) in [(p.outer_src, p.outer_dst) for p in red_rep],
               "... and vm5's ARP reply came back through the tunnel, hv2 -> hv1")
    lab.expect(ex.neighbour["vm4->vm5"] == vm["vm5"], "vm4 learned vm5's MAC the flood-and-learn way")

    lab.say("step 2: blue, an IP no port has: nothing to answer with, so the request floods")
    unknown = flood_unknown(lab)
    lab.expect(sorted(p.outer_dst for p in unknown if p.kind == "vxlan" and p.key == VNI_BLUE) == [HV["hv2"], HV["hv3"]],
               f"who-has {UNKNOWN_IP} went to hv2 and hv3 in vni {VNI_BLUE} (group 101's buckets)")

    lab.say("step 3: the pre-populated tables on hv1")
    tun = lab.state.hosts["hv1"]["bridge_tun"]
    t20 = [f for f in lab.ovs("hv1").dump_flows(tun, f"table={UNICAST}") if "priority=2," in f]
    to_hv2 = lab.tunnel_port("hv1", "hv2", "vxlan")
    lab.expect(any(f"dl_dst={vm['vm2']}" in f and f"output:{to_hv2}" in f for f in t20),
               f"table {UNICAST} (priority 2, from the topology): vm2's MAC -> tunnel to hv2 (port {to_hv2})")

    lab.say("step 4: a unicast ARP request (arping's second probe, the kernel's reachability probes)")
    probes = [p for p in lab.capture(lambda: arping(lab, "vm1", lab.vm("vm3")["ip"], count=2)) if p.is_arp]
    lab.say("    " + "; ".join(f"{p.outer_src}->{p.outer_dst} {p.inner_src_mac}>{p.inner_dst_mac}" for p in probes))
    lab.expect(not any(p.inner_dst_mac == "ff:ff:ff:ff:ff:ff" for p in probes),
               "no broadcast ARP: the first probe was answered on hv1")
    lab.expect(bool(probes) and all({p.outer_src, p.outer_dst} == {HV["hv1"], HV["hv3"]} for p in probes),
               f"the unicast probe (to vm3's MAC) is ordinary unicast: hv1 <-> hv3 only, answered by vm3 ({len(probes)} frames)")


if __name__ == "__main__":
    main(check, __doc__)
