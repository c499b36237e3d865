"""Lab 03 check (seed 003): the full matrix holds; blue crosses the underlay as VXLAN vni 101,
red as GRE key 102 (0x66); tenants cannot reach each other; the seed's tables exist in ours."""

from __future__ import annotations

from ovsflow.lab.check import run_check
from ovsflow.lab.exercise import Exercise, main

BLUE, RED = ("vm1", "vm2", "vm3"), ("vm4", "vm5", "vm6")
VNI_BLUE, KEY_RED = 101, 102


def check(lab: Exercise) -> None:
    lab.say("step 1: the connectivity matrix (`ovsflow lab check`)")
    result = run_check(lab.state)
    same = [r for r in result.pairs.values() if r.same_network]
    cross = [r for r in result.pairs.values() if not r.same_network]
    lab.expect(len(same) == 12 and all(r.ok for r in same), "all 12 same-tenant pairs reach each other (ping + L2 probe)")
    lab.expect(len(cross) == 18 and all(r.ok for r in cross), "all 18 cross-tenant pairs are isolated")
    lab.expect(all(r.ping is False for r in cross), "every cross-tenant ping fails")

    lab.say("step 2: the same ping in each tenant, on the wire")
    blue_macs = {lab.vm(p)["mac"] for p in BLUE}
    red_macs = {lab.vm(p)["mac"] for p in RED}
    ok = []
    packets = lab.capture(lambda: ok.extend([lab.ping("vm1", "vm2", 2), lab.ping("vm4", "vm5", 2)]))
    lab.expect(ok == [True, True], "vm1 -> vm2 (blue) and vm4 -> vm5 (red) both work")
    vx = [p for p in packets if p.kind == "vxlan"]
    gre = [p for p in packets if p.kind == "gre"]
    lab.expect(bool(vx) and {p.key for p in vx} == {VNI_BLUE}, f"VXLAN (UDP 4789) packets carry vni {VNI_BLUE} only")
    lab.expect(bool(gre) and {p.key for p in gre} == {KEY_RED}, f"GRE packets carry key {KEY_RED:#x} only")
    lab.expect(all(p.inner_src_mac in blue_macs for p in vx), "inside VXLAN: only blue VMs' frames")
    lab.expect(all(p.inner_src_mac in red_macs for p in gre), "inside GRE: only red VMs' frames")
    lab.expect(len(vx) + len(gre) == len(packets), "nothing else is tunnelled")

    lab.say("step 3: seed 003's tables, in ovsflow's numbering (README has the map)")
    tun = lab.state.hosts["hv1"]["bridge_tun"]
    flows = lab.ovs("hv1").dump_flows(tun)
    by_table = {}
    for f in flows:
        t = int(f.split("table=")[1].split(",")[0]) if "table=" in f else 0
        by_table.setdefault(t, []).append(f)
    lab.expect(any(f"tun_id={KEY_RED:#x}" in f for f in by_table.get(3, [])), "table 3 (GRE in) maps key 0x66 to red's local VLAN")
    lab.expect(any(f"tun_id={VNI_BLUE:#x}" in f for f in by_table.get(4, [])), "table 4 (VXLAN in) maps vni 0x65 to blue's local VLAN")
    lab.expect(any("learn(" in f for f in by_table.get(10, [])), "table 10 learns, like the seed's table 10")
    lab.expect(bool(by_table.get(22)), "table 22 floods (the seed's table 21)")


if __name__ == "__main__":
    main(check, __doc__)
