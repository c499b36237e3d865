"""Lab 07 check (seed 004, 4.2.2): VMs of two subnets talk through a router, centralized and distributed.

Centralized (r1 on hv3, VNIs 5000/6000): a routed frame crosses the underlay twice, VNI 5000 to hv3,
then VNI 6000 from hv3 to the destination's host, arriving with TTL 63, the router's MAC on the
destination network as source and the VM's MAC as destination. Distributed (r2, VNIs 5001/6001):
one leg, with the destination network's VNI, straight to the destination's host. The gateway's ARP
and ping are answered on the sending host (nothing on the underlay); a third network (r3) with the
same subnet receives nothing; no br-tun ever learns a router MAC.
"""

import re  # no `from __future__ import annotations`: test_labs loads this file without sys.modules
import subprocess
import time

from ovsflow.lab.capture import TunnelPacket
from ovsflow.lab.exercise import Exercise, main
from ovsflow.model import load_topology

HV = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}
ROUTER_HOST = "hv3"  # r1 routes there: the seed's VTEP_3
CENTRALIZED = {"src": 5000, "dst": 6000}
DISTRIBUTED = {"src": 5001, "dst": 6001}
ISOLATED = ("vm7", "vm8")  # network `other`, router r3: web's subnet, vm7 even has vm1's address
LEARNED = "cookie=0x6f76736600000001/-1"


def router_macs(lab: Exercise) -> dict:
    """network -> the MAC of its router there (from the lab's topology, defaults resolved)."""
    topo = load_topology(lab.state.topology)
    return {n: r.mac(n) for r in topo.routers.values() for n in r.networks}


def gateways(lab: Exercise) -> dict:
    topo = load_topology(lab.state.topology)
    return {n: str(net.gateway) for n, net in topo.networks.items() if net.gateway}


def ping_ttls(lab: Exercise, src: str, ip: str, count: int = 3, ttl: int = 0) -> list:
    """The TTLs of the echo replies VM `src` got from `ip` (`ttl=NN` in ping's output)."""
    cmd = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", *(["-t", str(ttl)] if ttl else []), ip]
    return [int(t) for t in re.findall(r"ttl=(\d+)", lab.run(src, *cmd).stdout)]


def echo(packets: list, kind: str) -> list:
    """The ICMP echo requests or replies among captured tunnel frames."""
    return [p for p in packets if f"ICMP echo {kind}" in p.inner]


def leg(p: TunnelPacket) -> str:
    """One underlay hop, readably: hv1->hv3 vni 5000 src>dst ttl 64."""
    names = {ip: h for h, ip in HV.items()}
    return (f"{names.get(p.outer_src, p.outer_src)}->{names.get(p.outer_dst, p.outer_dst)} vni {p.key} "
            f"{p.inner_src_mac}>{p.inner_dst_mac} ttl {p.inner_ttl}")


def routed_capture(lab: Exercise, src: str, dst: str) -> tuple:
    """One ping from `src` to `dst` under an underlay capture: (reply TTLs, tunnel frames)."""
    lab.ping(src, dst, count=2)  # warm: the VTEPs' underlay neighbours, the datapath's flows
    ttls = []
    packets = lab.capture(lambda: ttls.extend(ping_ttls(lab, src, lab.vm(dst)["ip"], count=1)))
    return ttls, packets


def gateway_exchange(lab: Exercise, ports: list) -> tuple:
    """Every VM of `ports` forgets its neighbours, then arpings and pings its gateway, all under one
    underlay capture, which ends with one routed ping vm1 -> vm2 to show it does see the tunnels:
    ({port: (arping MAC, ping reply TTLs)}, tunnel frames)."""
    gws, answers = gateways(lab), {}

    def traffic() -> None:
        for port in ports:
            gw = gws[lab.vm(port)["network"]]
            lab.run(port, "ip", "neigh", "flush", "all")
            out = lab.run(port, "arping", "-c", "1", "-w", "2", "-I", "eth0", gw).stdout
            m = re.search(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", out)
            answers[port] = ((m.group(1).lower() if m else ""), ping_ttls(lab, port, gw, count=2))
        answers["control"] = ("", ping_ttls(lab, "vm1", lab.vm("vm2")["ip"], count=1))

    return answers, lab.capture(traffic)


def vm_capture(lab: Exercise, ports: tuple, action) -> dict:
    """tcpdump inside each VM of `ports` while `action` runs: every frame it received that it did
    not send itself ({port: [tcpdump lines]})."""
    procs = {}
    try:
        for port in ports:
            vm = lab.vm(port)
            procs[port] = subprocess.Popen(
                ["ip", "netns", "exec", vm["netns"], "tcpdump", "-l", "-n", "-e", "-i", vm["dev"], "not", "ether", "src", vm["mac"]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for proc in procs.values():
            line, deadline = "", time.monotonic() + 10
            while "listening on" not in line and time.monotonic() < deadline:
                line = proc.stderr.readline()
        action()
        time.sleep(0.3)
    finally:
        for proc in procs.values():
            proc.terminate()
    return {port: [ln for ln in proc.communicate(timeout=10)[0].splitlines() if ln.strip()] for port, proc in procs.items()}


def pings_into_other_tenant(lab: Exercise) -> dict:
    """vm2 (r1) and vm5 (r2) ping vm8's address (no port of their router has it) and vm7's (vm1 and
    vm4 have it too, so their routers deliver it there), while vm7 and vm8 listen."""
    replies = {}

    def traffic() -> None:
        for src in ("vm2", "vm5"):
            for dst in ISOLATED:
                replies[f"{src}->{dst}"] = ping_ttls(lab, src, lab.vm(dst)["ip"], count=2)

    heard = vm_capture(lab, ISOLATED, traffic)
    return {"replies": replies, "heard": heard}


def learned_router_macs(lab: Exercise) -> list:
    """Learned br-tun entries (cookie ...0001) on any host that name a router MAC."""
    macs = set(router_macs(lab).values())
    bad = []
    for host, info in lab.state.hosts.items():
        for f in lab.ovs(host).dump_flows(info["bridge_tun"], LEARNED):
            bad += [f"{host}: {f}" for m in macs if m in f]
    return bad


def ttl_drops(lab: Exercise, host: str) -> int:
    """Packets the route table's TTL 0/1 drop flows counted on `host`."""
    flows = lab.ovs(host).dump_flows(lab.state.hosts[host]["bridge_int"], "table=12,ip", stats=True)
    return sum(int(m.group(1)) for f in flows if "nw_ttl=" in f and (m := re.search(r"n_packets=(\d+)", f)))


def check_centralized(lab: Exercise, macs: dict) -> None:
    for src, dst, where in (("vm1", "vm2", "hv1 -> hv2"), ("vm1", "vm3", "both on hv1")):
        lab.say(f"step: centralized (r1 on {ROUTER_HOST}), {src} -> {dst} ({where}), one ping under an underlay capture")
        ttls, packets = routed_capture(lab, src, dst)
        src_host, dst_host = HV[lab.vm(src)["host"]], HV[lab.vm(dst)["host"]]
        req = echo(packets, "request")
        for p in req:
            lab.say(f"    request leg {leg(p)}")
        lab.expect(ttls == [63], f"{src} got its reply with TTL 63 (64 - one router hop): {ttls}")
        lab.expect(len(req) == 2, f"the request crossed the underlay twice ({len(req)} legs)")
        first = [p for p in req if p.key == CENTRALIZED["src"]]
        second = [p for p in req if p.key == CENTRALIZED["dst"]]
        lab.expect(len(first) == 1 and (first[0].outer_src, first[0].outer_dst) == (src_host, HV[ROUTER_HOST])
                   and first[0].inner_dst_mac == macs["web-c"] and first[0].inner_ttl == 64,
                   f"leg 1: VNI 5000 from {src}'s host to {ROUTER_HOST}, to the gateway's MAC {macs['web-c']}, TTL 64")
        lab.expect(len(second) == 1 and (second[0].outer_src, second[0].outer_dst) == (HV[ROUTER_HOST], dst_host)
                   and second[0].inner_src_mac == macs["db-c"] and second[0].inner_dst_mac == lab.vm(dst)["mac"]
                   and second[0].inner_ttl == 63,
                   f"leg 2: VNI 6000 from {ROUTER_HOST} to {dst}'s host, source MAC := {macs['db-c']} (the router's on db-c), "
                   f"destination MAC := {dst}'s, TTL 63")
        rep = echo(packets, "reply")
        lab.expect(sorted(p.key for p in rep) == [CENTRALIZED["src"], CENTRALIZED["dst"]],
                   f"the reply came back the same way round: VNI 6000 to {ROUTER_HOST}, VNI 5000 from it "
                   f"({', '.join(leg(p) for p in rep)})")


def check_distributed(lab: Exercise, macs: dict) -> None:
    lab.say("step: distributed (r2), vm4 (hv1) -> vm5 (hv2), one ping under an underlay capture")
    ttls, packets = routed_capture(lab, "vm4", "vm5")
    req, rep = echo(packets, "request"), echo(packets, "reply")
    for p in req + rep:
        lab.say(f"    leg {leg(p)}")
    lab.expect(ttls == [63], f"vm4 got its reply with TTL 63: {ttls}")
    lab.expect(len(req) == 1 and req[0].key == DISTRIBUTED["dst"] and (req[0].outer_src, req[0].outer_dst) == (HV["hv1"], HV["hv2"]),
               "the request crossed the underlay once, already in db-d's VNI 6001, hv1 -> hv2 (routed on hv1)")
    lab.expect(len(req) == 1 and req[0].inner_src_mac == macs["db-d"] and req[0].inner_dst_mac == lab.vm("vm5")["mac"]
               and req[0].inner_ttl == 63, f"... source MAC {macs['db-d']} (the router's on db-d), vm5's MAC, TTL 63 inside")
    lab.expect(len(rep) == 1 and rep[0].key == DISTRIBUTED["src"] and (rep[0].outer_src, rep[0].outer_dst) == (HV["hv2"], HV["hv1"]),
               "the reply: once, in web-d's VNI 5001, hv2 -> hv1 (routed on hv2)")
    lab.expect(not any(HV[ROUTER_HOST] in (p.outer_src, p.outer_dst) for p in packets), "hv3 saw none of it")

    lab.say("step: distributed, vm4 -> vm6 (both on hv1): routed inside hv1's br-int")
    ttls, packets = routed_capture(lab, "vm4", "vm6")
    lab.expect(ttls == [63] and not echo(packets, "request"), f"TTL 63 and no tunnel frame at all ({len(packets)} frames)")


def check(lab: Exercise) -> None:
    macs = router_macs(lab)
    lab.say("step 1: every VM forgets its neighbours, then arpings and pings its gateway (one underlay capture)")
    ports = ["vm1", "vm2", "vm4", "vm5", "vm7"]
    answers, packets = gateway_exchange(lab, ports)
    for port in ports:
        net = lab.vm(port)["network"]
        mac, ttls = answers[port]
        lab.expect(mac == macs[net] and ttls == [64, 64],
                   f"{port} ({net}): the gateway is-at {mac or '?'} (router {macs[net]}), ping replies TTL {ttls}")
    gw_ips = set(gateways(lab).values())
    leaked = [p for p in packets if any(re.search(rf"{re.escape(ip)}(?![.\d])", p.inner) for ip in gw_ips)]
    control = echo(packets, "request")
    lab.expect(not leaked and len(control) == 2 and answers["control"][1] == [63],
               f"nothing of it on the underlay: {len(packets)} tunnel frames, "
               f"{len(leaked)} about a gateway IP (ARP or ICMP) {[p.inner[:90] for p in leaked]}; "
               f"the capture saw the control ping vm1 -> vm2 ({len(control)} request legs)")

    check_centralized(lab, macs)
    check_distributed(lab, macs)

    lab.say("step: the third network (other, router r3, web's subnet): vm2 and vm5 ping vm7's and vm8's addresses")
    other = pings_into_other_tenant(lab)
    lab.expect(other["replies"]["vm2->vm8"] == [] and other["replies"]["vm5->vm8"] == [],
               f"{lab.vm('vm8')['ip']} (only vm8 has it): no reply (route miss: dropped, not flooded)")
    lab.expect(other["replies"]["vm2->vm7"] == [63, 63] and other["replies"]["vm5->vm7"] == [63, 63],
               f"{lab.vm('vm7')['ip']}: answered, with TTL 63, by vm1 / vm4 (their router's VM with that address)")
    lab.expect(all(v == [] for v in other["heard"].values()),
               f"vm7 and vm8 received nothing: {sum(len(v) for v in other['heard'].values())} frames {other['heard']}")

    lab.say("step: TTL 1 from vm1 (centralized) and vm4 (distributed): dropped by the router, counted")
    before = {h: ttl_drops(lab, h) for h in ("hv1", "hv3")}
    lost = ping_ttls(lab, "vm1", lab.vm("vm2")["ip"], count=2, ttl=1) + ping_ttls(lab, "vm4", lab.vm("vm5")["ip"], count=2, ttl=1)
    after = {h: ttl_drops(lab, h) for h in ("hv1", "hv3")}
    lab.expect(lost == [] and after["hv3"] - before["hv3"] >= 2 and after["hv1"] - before["hv1"] >= 2,
               f"no reply; TTL drops counted on hv3 (r1) +{after['hv3'] - before['hv3']}, on hv1 (r2) +{after['hv1'] - before['hv1']}")

    lab.say("step: after routed traffic from every host, learn() has never learned a router MAC")
    for src, dst in (("vm2", "vm1"), ("vm3", "vm1"), ("vm5", "vm4"), ("vm6", "vm4"), ("vm2", "vm3")):
        lab.ping(src, dst, count=2)
    learned = sum(len(lab.ovs(h).dump_flows(i["bridge_tun"], LEARNED)) for h, i in lab.state.hosts.items())
    bad = learned_router_macs(lab)
    lab.expect(learned > 0 and not bad, f"{learned} learned entries on the three br-tun, {len(bad)} with a router MAC {bad[:2]}")


if __name__ == "__main__":
    main(check, __doc__)
