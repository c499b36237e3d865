"""Lab 01 check: a VM-to-VM ping crosses the underlay as VXLAN, vni 101, UDP 4789, 50 bytes heavier."""

from __future__ import annotations

from ovsflow.lab.exercise import Exercise, main

VNI = 101
VTEPS = {"192.0.2.11", "192.0.2.12"}


def check(lab: Exercise) -> None:
    macs = {lab.vm("vm1")["mac"], lab.vm("vm2")["mac"]}
    lab.say("step 1: vm1 pings vm2 while tcpdump watches the underlay")
    ok = []
    packets = lab.capture(lambda: ok.append(lab.ping("vm1", "vm2", count=3)))
    lab.expect(ok == [True], "vm1 reaches vm2 (198.51.100.2)")
    lab.expect(len(packets) >= 4, f"tunnel packets on the underlay: {len(packets)} (echo requests, replies, ARP)")
    lab.expect(all(p.kind == "vxlan" for p in packets), "every one is VXLAN (UDP port 4789)")
    lab.expect({p.key for p in packets} == {VNI}, f"every one carries vni {VNI}: {sorted({p.key for p in packets})}")
    lab.expect(all({p.outer_src, p.outer_dst} == VTEPS for p in packets),
               "outer IPs are the two VTEPs (192.0.2.11 <-> 192.0.2.12), never the VMs' addresses")
    lab.expect(all(p.inner_src_mac in macs for p in packets), "the inner frames are the VMs' own Ethernet frames")
    requests = [p for p in packets if "echo request" in p.inner]
    lab.expect(bool(requests) and all(p.outer_src == "192.0.2.11" for p in requests),
               "echo requests leave hv1's VTEP (192.0.2.11) towards hv2's")
    overheads = {p.overhead for p in packets if p.inner_len}
    lab.expect(overheads == {50}, f"VXLAN adds exactly 50 bytes (14 Ethernet + 20 IP + 8 UDP + 8 VXLAN): {sorted(overheads)}")

    lab.say("step 2: the MTU arithmetic (VM MTU 1450 = 1500 - 50)")
    mtu = lab.run("vm1", "cat", f"/sys/class/net/{lab.vm('vm1')['dev']}/mtu").stdout.strip()
    lab.expect(mtu == "1450", f"VM interface MTU is 1450 ({mtu})")
    big = lab.run("vm1", "ping", "-n", "-q", "-c", "2", "-W", "1", "-M", "do", "-s", "1422", lab.vm("vm2")["ip"])
    lab.expect(big.returncode == 0, "a full 1450-byte packet (1422 payload + 28 ICMP/IP) crosses with DF set")
    too_big = lab.run("vm1", "ping", "-n", "-q", "-c", "1", "-W", "1", "-M", "do", "-s", "1423", lab.vm("vm2")["ip"])
    lab.expect(too_big.returncode != 0, "1451 bytes with DF set is refused in the VM (it would not fit the underlay)")


if __name__ == "__main__":
    main(check, __doc__)
