"""Lab 02 check: the first ARP floods to every VTEP of the network, learn() fills table 20, then
traffic is unicast to exactly one VTEP."""

from __future__ import annotations

from ovsflow.lab.exercise import Exercise, main

HV = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}
VNI = 101


def check(lab: Exercise) -> None:
    vm1, vm2, vm3 = (lab.vm(p)["mac"] for p in ("vm1", "vm2", "vm3"))
    lab.say("step 0: cold start (learned flows deleted, ARP caches flushed)")
    lab.forget()
    lab.expect(all(not lab.learned(h) for h in HV), "table 20 holds no learned flow on any host")

    lab.say("step 1: vm1 pings vm2 once; watch the underlay")
    ok = []
    first = lab.capture(lambda: ok.append(lab.ping("vm1", "vm2", count=1)))
    lab.expect(ok == [True], "vm1 reaches vm2")
    arp = [p for p in first if p.inner_src_mac == vm1 and p.inner_dst_mac == "ff:ff:ff:ff:ff:ff"]
    lab.expect({p.outer_dst for p in arp} == {HV["hv2"], HV["hv3"]},
               f"vm1's ARP broadcast is flooded to both other VTEPs (head-end replication): {sorted({p.outer_dst for p in arp})}")
    lab.expect(all(p.outer_src == HV["hv1"] and p.key == VNI for p in arp), f"... from hv1's VTEP, vni {VNI}")
    replies = [p for p in first if p.inner_src_mac == vm2]
    lab.expect(bool(replies) and all(p.outer_dst == HV["hv1"] for p in replies),
               "vm2's answers come back unicast to hv1 only (hv2 learned vm1 from the flood)")

    lab.say("step 2: table 20 after the first exchange")
    l1, l2, l3 = lab.learned("hv1"), lab.learned("hv2"), lab.learned("hv3")
    for host, flows in (("hv1", l1), ("hv2", l2), ("hv3", l3)):
        for f in flows:
            lab.say(f"    {host}: {f}")
    to_hv2 = lab.tunnel_port("hv1", "hv2", "vxlan")
    lab.expect(any(f"dl_dst={vm2}" in f and f"output:{to_hv2}" in f and f"{VNI:#x}->NXM_NX_TUN_ID" in f for f in l1),
               f"hv1 learned vm2's MAC behind its tunnel to hv2 (port {to_hv2}), with tun_id {VNI:#x}")
    to_hv1 = lab.tunnel_port("hv2", "hv1", "vxlan")
    lab.expect(any(f"dl_dst={vm1}" in f and f"output:{to_hv1}" in f for f in l2),
               f"hv2 learned vm1's MAC behind its tunnel to hv1 (port {to_hv1})")
    lab.expect(any(f"dl_dst={vm1}" in f for f in l3) and not any(f"dl_dst={vm2}" in f for f in l3),
               "hv3 learned vm1 (it received the flood) but not vm2 (it saw no unicast)")
    lab.expect(not any(f"dl_dst={vm3}" in f for f in l1 + l2), "nobody learned vm3, which stayed silent")

    lab.say("step 3: ping again: unicast, no flood")
    ok = []
    second = lab.capture(lambda: ok.append(lab.ping("vm1", "vm2", count=3)))
    lab.expect(ok == [True], "vm1 reaches vm2 again")
    lab.expect(bool(second) and all({p.outer_src, p.outer_dst} == {HV["hv1"], HV["hv2"]} for p in second),
               f"every packet goes between hv1 and hv2 only; hv3 sees nothing ({len(second)} packets)")
    lab.expect(not any(p.inner_dst_mac == "ff:ff:ff:ff:ff:ff" for p in second), "no broadcast crosses the underlay")


if __name__ == "__main__":
    main(check, __doc__)
