"""Lab 04 check: two tenants with identical IPs and MACs share two hypervisors and never see
each other's frames; the VNI is the only difference on the wire."""

from __future__ import annotations

import subprocess
import time

from ovsflow.lab.check import run_check
from ovsflow.lab.exercise import Exercise, main


def check(lab: Exercise) -> None:
    lab.say("step 1: the matrix, proven with marked frames (ping alone cannot tell twins apart)")
    lab.forget()
    result = run_check(lab.state)
    lab.expect(result.ok, f"matrix holds: {len(result.violations)} violations")
    cross = [r for r in result.pairs.values() if not r.same_network]
    lab.expect(all(not r.l2 for r in cross), "no probe frame of one tenant ever reached the other")

    lab.say("step 2: a1 pings 198.51.100.2 while tcpdump runs inside g2 (globex's VM with that IP)")
    g2 = lab.vm("g2")
    sniff = subprocess.Popen(["ip", "netns", "exec", g2["netns"], "tcpdump", "-l", "-n", "-i", g2["dev"], "icmp or arp"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = sniff.stderr.readline() if sniff.stderr else ""
        while "listening on" not in line and sniff.poll() is None:
            line = sniff.stderr.readline()
        ok = lab.ping("a1", "198.51.100.2", count=3)
        time.sleep(0.3)
    finally:
        sniff.terminate()
    seen, _ = sniff.communicate(timeout=10)
    lab.expect(ok, "a1 gets its answers (from a2, its own tenant's 198.51.100.2)")
    lines = [ln for ln in seen.splitlines() if ln.strip()]
    lab.expect(not lines, f"g2 saw nothing: {len(lines)} ICMP/ARP frames")

    lab.say("step 3: both tenants ping at once; on the wire the frames differ only by VNI")
    oks = []
    packets = lab.capture(lambda: oks.extend([lab.ping("a1", "198.51.100.2", 2), lab.ping("g1", "198.51.100.2", 2)]))
    lab.expect(oks == [True, True], "a1 and g1 both reach their own 198.51.100.2")
    requests = [p for p in packets if "echo request" in p.inner]
    lab.expect({p.key for p in requests} == {201, 202}, f"echo requests carry vni 201 and 202: {sorted({p.key for p in requests})}")
    lab.expect(len({(p.inner_src_mac, p.inner_dst_mac) for p in requests}) == 1,
               "and the inner frames have the same MAC pair in both tenants")

    lab.say("step 4: hv1 learned the same MAC twice, once per tenant")
    learned = [f for f in lab.learned("hv1") if "dl_dst=02:00:00:00:00:02" in f]
    for f in learned:
        lab.say(f"    {f}")
    lab.expect(len(learned) == 2, "two learned flows for 02:00:00:00:00:02 in table 20")
    lab.expect({"0xc9->NXM_NX_TUN_ID" in f for f in learned} == {True, False}
               and any("0xca->NXM_NX_TUN_ID" in f for f in learned),
               "one sends with vni 201 (0xc9), the other with vni 202 (0xca): each keyed by its tenant's local VLAN")


if __name__ == "__main__":
    main(check, __doc__)
