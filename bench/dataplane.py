"""Benchmark 5: VM-to-VM TCP throughput in the lab, ovsflow's pipeline against two references.

The lab is labs/03-seed003 (3 hypervisors x 2 tenants; blue on VXLAN, red on GRE), each hypervisor
a private ovs-vswitchd on the userspace datapath. For each tenant, iperf3 TCP from its VM on hv1 to
its VM on hv2 through:
  pipeline        - ovsflow's rendered program (br-int + br-tun, learn(), groups), as `lab up` loads it;
  baseline        - a hand-written 2-flow-per-bridge program on the same bridges, ports and tunnel
                    (ovsflow.lab.throughput.install_baseline): the least that still forwards;
  kernel          - the Linux kernel's own VXLAN device directly between the same two VM namespaces
                    over a veth (no OVS at all), checksum offload off like every lab NIC;
  kernel-offload  - the same with the kernel's default offloads on (TSO/checksum: the kernel's best);
  pipeline-again  - ovsflow's program once more, as its own variant: an A/A control whose ratio to
                    `pipeline` shows how far this harness, on this machine, moves a ratio by itself.
Before the rounds, one unrecorded second through each OVS program takes the fresh lab's first-contact
cache misses (reported separately), so they do not land on whichever variant happens to run first.
Rounds interleave the variants, rotating their order each round, so a burst of load from the other
engineers' jobs on this shared 2-core machine hits every variant alike; ratios of medians are the
figures that mean something, absolute Mbit/s less so.

While each OVS run is live, the datapath is sampled on the sender's and receiver's hypervisor:
  CPU             - ovs-vswitchd's CPU seconds (all threads, /proc) per datapath packet; revalidator
                    threads separately (they would carry learn()'s refreshes);
  megaflows       - `ovs-appctl dpctl/dump-flows` lines (all bridges share one userspace datapath),
                    and how many of them matched a packet in the last second (the ones carrying the test),
                    compared as match + actions with the baseline's;
  upcalls         - `dpif-netdev/pmd-stats-show` "miss with success/failed upcall", cleared before the
                    run: packets that missed every datapath cache and went up to ofproto-dpif to run the
                    OpenFlow tables. This is the userspace datapath's packet-in to its own slow path, and
                    the cost that matters: with no controller (render mode) there are no OpenFlow
                    packet-ins at all, which the benchmark checks by counting flows that output to
                    CONTROLLER (0 expected).
Kernel GRE has no reference here when the kernel lacks gretap (this one does: no ip_gre, no modules).

  python -m bench dataplane [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "labs" / "03-seed003" / "topology.yaml"
OVS_VARIANTS = ("pipeline", "baseline")
CONTROL = "pipeline-again"  # A/A control: the same program as `pipeline`, measured as a separate variant
KERNEL_VARIANTS = {"kernel": False, "kernel-offload": True}  # name -> tx offload on


def _pairs(topo) -> list[tuple[str, str, str]]:
    """(network, src, dst) per network: its first two ports (by name) on different hosts."""
    out = []
    for net in sorted(topo.networks):
        ports = sorted(p for p in topo.ports.values() if p.network == net and p.ip)
        for i, a in enumerate(ports):
            b = next((b for b in ports[i + 1:] if b.host != a.host), None)
            if b is not None:
                out.append((net, a.name, b.name))
                break
    return out


def _loadavg() -> float:
    return os.getloadavg()[0]


def _spread(xs: list[float]) -> list[float]:
    return [statistics.median(xs), min(xs), max(xs)]


class Case:
    """One tenant network's VM pair and every sample taken for it."""

    def __init__(self, state, topo, net: str, src: str, dst: str, index: int) -> None:
        from ovsflow.lab import throughput as tp

        self.tp, self.state, self.net = tp, state, topo.networks[net]
        self.src, self.dst, self.index = src, dst, index
        self.ha, self.hb = state.vms[src]["host"], state.vms[dst]["host"]
        self.variants = [*OVS_VARIANTS, CONTROL, *KERNEL_VARIANTS]
        self.samples: dict[str, list[dict]] = {v: [] for v in self.variants}
        self.notes: list[str] = []
        self.warmup: dict[str, dict] = {}  # first contact through fresh caches, not in the figures

    def _program(self, variant: str) -> None:
        tp, st = self.tp, self.state
        if variant in ("pipeline", CONTROL):
            tp.restore_program(st, self.ha)
            tp.restore_program(st, self.hb)
        else:
            tp.install_baseline(st, self.ha, self.src, self.hb, self.net.tunnel, self.net.vni)
            tp.install_baseline(st, self.hb, self.dst, self.ha, self.net.tunnel, self.net.vni)

    def measure(self, variant: str, seconds: int, omit: int, *, warmup: bool = False) -> None:
        tp, st = self.tp, self.state
        from ovsflow.lab import lab as labmod

        if variant in KERNEL_VARIANTS:
            try:
                with tp.kernel_tunnel(st, self.src, self.dst, kind=self.net.tunnel, vni=self.net.vni,
                                      index=self.index, tx_offload=KERNEL_VARIANTS[variant]) as ip:
                    labmod.ping(st, self.src, ip, 2)
                    mbit, retr = tp.iperf(st, self.src, self.dst, seconds, target_ip=ip, omit=omit)
            except Exception as e:  # e.g. "Unknown device type": this kernel has no gretap
                self.variants.remove(variant)
                del self.samples[variant]
                self.notes.append(f"{variant}: not measured ({str(e).splitlines()[0][-160:]})")
                return
            self.samples[variant].append({"mbit": mbit, "retransmits": retr, "load": _loadavg()})
            return
        self._program(variant)
        labmod.ping(st, self.src, st.vms[self.dst]["ip"], 2)  # learn/ARP before the clock starts
        for h in (self.ha, self.hb):
            tp.pmd_stats(st, h, clear=True)
        mid: dict = {}

        def sample() -> None:
            mid["a"], mid["b"] = tp.datapath_flows(st, self.ha), tp.datapath_flows(st, self.hb)
            mid["flows"] = [tp.active_megaflows(st, self.ha), tp.active_megaflows(st, self.hb)]

        cpu0 = [tp.vswitchd_cpu(st, h) for h in (self.ha, self.hb)]
        mbit, retr = tp.iperf(st, self.src, self.dst, seconds, omit=omit, during=sample)
        cpu1 = [tp.vswitchd_cpu(st, h) for h in (self.ha, self.hb)]
        pa, pb = tp.pmd_stats(st, self.ha), tp.pmd_stats(st, self.hb)
        cpu = [sum(c1.values()) - sum(c0.values()) for c0, c1 in zip(cpu0, cpu1)]
        reval = [c1.get("revalidator", 0.0) - c0.get("revalidator", 0.0) for c0, c1 in zip(cpu0, cpu1)]
        record = {
            "mbit": mbit, "retransmits": retr, "load": _loadavg(),
            "megaflows": [mid["a"][0], mid["b"][0]], "megaflows_active": [mid["a"][1], mid["b"][1]],
            "active_flows": mid["flows"],
            "upcalls": [pa["upcalls"] + pa["failed_upcalls"], pb["upcalls"] + pb["failed_upcalls"]],
            "dp_packets": [pa["packets"], pb["packets"]],
            "vswitchd_cpu_s": cpu, "revalidator_cpu_s": reval,
            "cpu_us_per_packet": [c * 1e6 / max(1, n) for c, n in zip(cpu, (pa["packets"], pb["packets"]))],
            "controller_flows": tp.controller_outputs(st, self.ha) + tp.controller_outputs(st, self.hb),
        }
        if warmup:
            self.warmup[variant] = record
        else:
            self.samples[variant].append(record)

    def row(self, rounds: int, seconds: int) -> dict:
        s, med = self.samples, statistics.median
        mb = {v: [x["mbit"] for x in s[v]] for v in self.variants}
        figures: dict[str, object] = {}
        for v in self.variants:
            figures[f"{v} (Mbit/s, median [min-max])"] = _spread(mb[v])
        figures["pipeline / baseline, ratio of medians (goal >= 0.95)"] = med(mb["pipeline"]) / med(mb["baseline"])
        figures["pipeline / baseline, per round (median [min-max])"] = _spread(
            [a / b for a, b in zip(mb["pipeline"], mb["baseline"])])
        figures[f"A/A control: {CONTROL} / pipeline, ratio of medians"] = med(mb[CONTROL]) / med(mb["pipeline"])
        figures[f"A/A control: {CONTROL} / pipeline, per round (median [min-max])"] = _spread(
            [a / b for a, b in zip(mb[CONTROL], mb["pipeline"])])
        for v in KERNEL_VARIANTS:
            if v in mb:
                figures[f"pipeline / {v}"] = med(mb["pipeline"]) / med(mb[v])
        figures["TCP retransmits per run, median (" + " / ".join(self.variants) + ")"] = [
            int(med([x["retransmits"] for x in s[v]])) for v in self.variants]
        for v in OVS_VARIANTS:
            figures[f"{v}: megaflows mid-run, sender / receiver host (max)"] = [
                max(x["megaflows"][i] for x in s[v]) for i in (0, 1)]
            figures[f"{v}: megaflows used in the last 1 s, sender / receiver (max)"] = [
                max(x["megaflows_active"][i] for x in s[v]) for i in (0, 1)]
            figures[f"{v}: upcalls per run, sender / receiver (max)"] = [
                max(x["upcalls"][i] for x in s[v]) for i in (0, 1)]
        for v in OVS_VARIANTS:
            figures[f"{v}: ovs-vswitchd CPU per datapath packet (us, sender / receiver, median)"] = [
                med(x["cpu_us_per_packet"][i] for x in s[v]) for i in (0, 1)]
        figures["vswitchd CPU per packet, pipeline / baseline (sender / receiver)"] = [
            med(x["cpu_us_per_packet"][i] for x in s["pipeline"]) / med(x["cpu_us_per_packet"][i] for x in s["baseline"])
            for i in (0, 1)]
        figures["revalidator CPU per run (s, sender / receiver, median): pipeline / baseline"] = [
            med(x["revalidator_cpu_s"][i] for x in s[v]) for v in OVS_VARIANTS for i in (0, 1)]
        base_sets = {json.dumps(x["active_flows"]) for x in s["baseline"]}
        same = sum(json.dumps(x["active_flows"]) in base_sets for x in s["pipeline"])
        figures["pipeline runs whose live megaflows (match+actions) equal a baseline run's"] = f"{same} of {len(s['pipeline'])}"
        figures["upcalls in the unrecorded 1 s warm-up, sender / receiver: pipeline / baseline"] = [
            self.warmup[v]["upcalls"][i] for v in OVS_VARIANTS for i in (0, 1)]
        figures["pipeline: datapath packets per run, sender / receiver (median)"] = [
            int(med(x["dp_packets"][i] for x in s["pipeline"])) for i in (0, 1)]
        figures["packet-ins possible (flows outputting to CONTROLLER; no controller set)"] = max(
            x["controller_flows"] for x in s["pipeline"])
        loads = [x["load"] for v in self.variants for x in s[v]]
        figures["1-min load average during the runs (median [min-max]; 2 cores, shared)"] = _spread(loads)
        tunnel = self.net.tunnel.upper()
        return {
            "benchmark": "dataplane",
            "case": f"{tunnel} ({self.net.name}, vni {self.net.vni}): {self.src}@{self.ha} -> {self.dst}@{self.hb}, "
                    f"{rounds} interleaved rounds x {seconds} s",
            "figures": figures,
            "goal": "pipeline >= 0.95x the 2-flow baseline (same run, interleaved)",
            "raw": {"samples": s, "warmup": self.warmup, "notes": self.notes, "rounds": rounds, "seconds": seconds},
        }


def run(quick: bool = False) -> list[dict]:
    from ovsflow.lab import lab as labmod
    from ovsflow.lab import throughput as tp
    from ovsflow.model import load_topology

    rounds, seconds, omit = (1, 1, 0) if quick else (5, 10, 1)
    topo = load_topology(TOPOLOGY)
    name = os.environ.get("OVSFLOW_BENCH_LAB") or f"bdp{os.getpid() % 100000}"  # tests pass theirs
    t0 = time.monotonic()
    try:
        state = labmod.up(topo, name)
        cases = [Case(state, topo, net, a, b, i) for i, (net, a, b) in enumerate(_pairs(topo))]
        for case in cases:  # one unrecorded second through each OVS program: whichever runs
            for v in OVS_VARIANTS:  # first must not also pay the fresh lab's first-contact misses
                case.measure(v, 1, 0, warmup=True)
        for r in range(rounds):
            for case in cases:
                order = list(case.variants)
                k = r % len(order)
                for v in order[k:] + order[:k]:  # rotate: no variant always runs first or last
                    case.measure(v, seconds, omit)
        for case in cases:
            tp.restore_program(state, case.ha)
            tp.restore_program(state, case.hb)
        rows = [c.row(rounds, seconds) for c in cases]
    finally:
        t_down = time.monotonic()
        labmod.down(name)
        down_s = time.monotonic() - t_down
    for row in rows:
        row["raw"]["total_s"] = round(time.monotonic() - t0, 1)
    rows.append({
        "benchmark": "dataplane", "case": "lab life-cycle: labs/03-seed003 (3 hosts x 2 tenants), one sample",
        "figures": {"lab up (s)": state.timings["up_s"], "lab down (s)": down_s},
        "goal": "lab up < 15 s, lab down < 5 s",
        "raw": {"timings": state.timings, "down_s": down_s},
    })
    return rows
