"""VM-to-VM TCP throughput in a running lab: ovsflow's pipeline vs a hand-written minimal program.

Why a baseline in the same run: the userspace datapath, not the pipeline, is the ceiling here and
the machine is shared, so only a ratio measured side by side means anything. The baseline keeps the
same bridges, ports and tunnel and replaces the flows with the least that still forwards: two flows
per bridge (VM <-> patch on br-int; patch <-> tunnel with the VNI set on br-tun). Rounds alternate
between the two programs so drifting load hits both alike.

  python -m ovsflow.lab.throughput SRC DST [--name NAME] [--rounds 3] [--seconds 4]

bench/dataplane.py builds on the pieces here: `iperf` (with a hook that runs mid-transfer),
`datapath_flows`/`pmd_stats` (what the datapath did during a run) and `kernel_tunnel` (the Linux
kernel's own VXLAN/GRE device between the same two VM namespaces, as a third reference).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import lab as labmod
from . import netns as ns
from .ovs import read_pid
from .state import LabState

IPERF_PORT = 5201


def _wait_listening(netns: str, port: int, timeout: float = 10.0) -> None:
    """Block until something listens on TCP `port` in `netns` (a loaded machine can take a while)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = ns.run(["ss", "-Hltn", f"sport = :{port}"], netns=netns, check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"iperf3 server in {netns} not listening on {port} after {timeout}s")


def iperf(state: LabState, src: str, dst: str, seconds: float, *, target_ip: str | None = None,
          omit: int = 0, during: Callable[[], object] | None = None) -> tuple[float, int]:
    """(Mbit/s received, retransmits) of one iperf3 TCP run from VM src to VM dst.

    `target_ip` overrides dst's port IP (the kernel reference uses its own overlay address);
    `omit` skips iperf3's first seconds (TCP slow start); `during` runs once mid-transfer, to
    sample the datapath while the flow is live."""
    server = subprocess.Popen(["ip", "netns", "exec", state.vms[dst]["netns"], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(state.vms[dst]["netns"], IPERF_PORT)
        cmd = ["ip", "netns", "exec", state.vms[src]["netns"], "iperf3", "-c", target_ip or state.vms[dst]["ip"],
               "-t", str(max(1, round(seconds))), "-J"] + (["-O", str(omit)] if omit else [])
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if during is not None:
                time.sleep(omit + seconds / 2)
                during()
            out, err = client.communicate(timeout=omit + seconds + 30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        data = json.loads(out) if out.strip() else {}
        if client.returncode != 0 or "end" not in data or "error" in data:
            raise RuntimeError(f"iperf3 {src}->{dst} failed: {data.get('error') or err.strip() or out[-300:]}")
        end = data["end"]
        return end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))
    finally:
        server.kill()
        server.wait()


_iperf = iperf  # the name compare() has always used


def active_megaflows(state: LabState, host: str, active_within: float = 1.0) -> list[str]:
    """`host`'s megaflows that matched a packet in the last `active_within` s, as match + actions
    without counters, sorted: two programs that make OVS cache the same thing give equal lists."""
    out = labmod.host_ovs(state, host).appctl("dpctl/dump-flows")
    flows = []
    for line in out.splitlines():
        m = re.search(r"used:([0-9.]+)s", line)
        if "actions:" in line and m and float(m.group(1)) <= active_within:
            flows.append(re.sub(r"packets:\d+, bytes:\d+, used:[0-9.]+s, (flags:\S+, )?", "", line.strip()))
    return sorted(flows)


def vswitchd_cpu(state: LabState, host: str) -> dict[str, float]:
    """CPU seconds (user + system) `host`'s ovs-vswitchd has used, per thread kind ('ovs-vswitchd'
    is the main thread, which also polls the userspace datapath's ports; 'revalidator', 'handler',
    'urcu', ...). Deltas around a run show where the switch spent its time."""
    ovs = labmod.host_ovs(state, host)
    pid = read_pid(ovs.vswitchd_pidfile)
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")].rstrip("0123456789")
        fields = stat[stat.rindex(")") + 2:].split()
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def datapath_flows(state: LabState, host: str, active_within: float = 1.0) -> tuple[int, int]:
    """(megaflows in `host`'s datapath, those that matched a packet in the last `active_within` s).

    The userspace datapath is shared by all bridges of the instance, so this counts br-phy, br-int
    and br-tun together: what OVS really caches for the traffic, whatever the OpenFlow program."""
    out = labmod.host_ovs(state, host).appctl("dpctl/dump-flows")
    flows = [line for line in out.splitlines() if "actions:" in line]
    active = 0
    for line in flows:
        m = re.search(r"used:([0-9.]+)s", line)
        if m and float(m.group(1)) <= active_within:
            active += 1
    return len(flows), active


PMD_FIELDS = {"packets received": "packets", "emc hits": "emc_hits", "smc hits": "smc_hits",
              "megaflow hits": "megaflow_hits", "miss with success upcall": "upcalls",
              "miss with failed upcall": "failed_upcalls"}


def pmd_stats(state: LabState, host: str, *, clear: bool = False) -> dict[str, int]:
    """The datapath's own counters (`dpif-netdev/pmd-stats-show`, summed over threads): packets,
    cache hits and upcalls, i.e. packets that missed every datapath cache and were handed to
    ofproto-dpif to run the OpenFlow tables. `clear` resets them afterwards."""
    ovs = labmod.host_ovs(state, host)
    totals = dict.fromkeys(PMD_FIELDS.values(), 0)
    for line in ovs.appctl("dpif-netdev/pmd-stats-show").splitlines():
        key, _, value = line.strip().partition(":")
        if key in PMD_FIELDS and value.strip().isdigit():
            totals[PMD_FIELDS[key]] += int(value)
    if clear:
        ovs.appctl("dpif-netdev/pmd-stats-clear")
    return totals


def controller_outputs(state: LabState, host: str) -> int:
    """OpenFlow flows on `host`'s br-int/br-tun that could send a packet-in (output to CONTROLLER)."""
    ovs = labmod.host_ovs(state, host)
    info = state.hosts[host]
    return sum("CONTROLLER" in f.upper() for br in (info["bridge_int"], info["bridge_tun"])
               for f in ovs.dump_flows(br))


KERNEL_NET = ipaddress.ip_network("203.0.113.0/24")  # documentation range, inside VM namespaces only
KERNEL_DEV, KERNEL_UNDERLAY = "ktun0", "kul0"


@contextmanager
def kernel_tunnel(state: LabState, src: str, dst: str, *, kind: str, vni: int, index: int = 0,
                  mtu: int = 1450, tx_offload: bool = False) -> Iterator[str]:
    """The Linux kernel's own tunnel between VM namespaces src and dst; yields dst's overlay IP.

    A veth `kul0` joins the two VM namespaces directly (underlay 203.0.113.<4i+1,4i+2>/30) and a
    kernel `vxlan` (dstport 4789) or `gretap` device `ktun0` with key `vni` rides it (overlay
    203.0.113.<128+4i+1,+2>/30). The VMs' TCP stacks are the same as in the OVS runs; only the
    switching differs. MTU 1450 like the VMs' eth0, and checksum offload off like every lab NIC
    unless `tx_offload`. Everything lives in the VM namespaces, so `lab down` removes it too."""
    if kind not in ("vxlan", "gre"):
        raise ValueError(f"no kernel reference for tunnel type {kind!r}")
    a, b = state.vms[src]["netns"], state.vms[dst]["netns"]
    base = int(KERNEL_NET.network_address) + 4 * index
    ul = [str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))]
    ov = [str(ipaddress.ip_address(base + 129)), str(ipaddress.ip_address(base + 130))]
    ns.veth_add(KERNEL_UNDERLAY, a, KERNEL_UNDERLAY, b)
    try:
        for i, where in enumerate((a, b)):
            local, remote = ul[i], ul[1 - i]
            if not tx_offload:
                ns.tx_offload_off(KERNEL_UNDERLAY, where)
            ns.link_up(KERNEL_UNDERLAY, where)
            ns.addr_add(KERNEL_UNDERLAY, f"{local}/30", where)
            if kind == "vxlan":
                dev = ["type", "vxlan", "id", str(vni), "local", local, "remote", remote,
                       "dstport", "4789", "dev", KERNEL_UNDERLAY]
            else:
                dev = ["type", "gretap", "local", local, "remote", remote, "key", str(vni)]
            ns.run(["ip", "link", "add", KERNEL_DEV, *dev], netns=where)
            if not tx_offload:
                ns.tx_offload_off(KERNEL_DEV, where)
            ns.link_up(KERNEL_DEV, where, mtu=mtu)
            ns.addr_add(KERNEL_DEV, f"{ov[i]}/30", where)
        yield ov[1]
    finally:
        for where in (a, b):
            ns.link_delete(KERNEL_DEV, where)
        ns.link_delete(KERNEL_UNDERLAY, a)


def _tunnel_name(kind: str, remote_vtep: str) -> str:
    return f"{kind}-" + "".join(f"{int(x):02x}" for x in remote_vtep.split("."))


def install_baseline(state: LabState, host: str, port: str, remote_host: str, kind: str, vni: int) -> None:
    """Replace `host`'s flows with the 2-flow-per-bridge program that carries only `port`."""
    ovs = labmod.host_ovs(state, host)
    info = state.hosts[host]
    vm_of = ovs.vsctl("get", "Interface", state.vms[port]["iface"], "ofport").strip()
    tun_of = ovs.vsctl("get", "Interface", _tunnel_name(kind, state.hosts[remote_host]["vtep"]), "ofport").strip()
    br_int = f"in_port={vm_of} actions=output:1\nin_port=1 actions=output:{vm_of}\n"
    br_tun = f"in_port=1 actions=set_field:{vni:#x}->tun_id,output:{tun_of}\nin_port={tun_of} actions=output:1\n"
    ovs.ofctl("--bundle", "replace-flows", info["bridge_int"], "-", input=br_int)
    ovs.ofctl("--bundle", "replace-flows", info["bridge_tun"], "-", input=br_tun)


def restore_program(state: LabState, host: str) -> None:
    """Back to ovsflow's program: clear the baseline, re-run the rendered script."""
    ovs = labmod.host_ovs(state, host)
    info = state.hosts[host]
    for br in (info["bridge_int"], info["bridge_tun"]):
        ovs.ofctl("del-flows", br)
    ns.run(["sh", "-e", str(Path(info["ovs_dir"]) / "program.sh")], netns=info["netns"], env=ovs.env)


def compare(state: LabState, src: str, dst: str, *, kind: str, vni: int, rounds: int = 3,
            seconds: float = 4) -> dict:
    """Alternate pipeline / baseline runs; medians, all samples and the ratio."""
    a, b = state.vms[src], state.vms[dst]
    ha, hb = a["host"], b["host"]
    samples: dict[str, list[tuple[float, int]]] = {"pipeline": [], "baseline": []}
    try:
        for _ in range(rounds):
            restore_program(state, ha)
            restore_program(state, hb)
            labmod.ping(state, src, b["ip"], 2)
            samples["pipeline"].append(_iperf(state, src, dst, seconds))
            install_baseline(state, ha, src, hb, kind, vni)
            install_baseline(state, hb, dst, ha, kind, vni)
            samples["baseline"].append(_iperf(state, src, dst, seconds))
    finally:
        restore_program(state, ha)
        restore_program(state, hb)
    med = {k: statistics.median(x[0] for x in v) for k, v in samples.items()}
    return {
        "src": src, "dst": dst, "rounds": rounds, "seconds": seconds,
        "pipeline_mbit": round(med["pipeline"], 1),
        "baseline_mbit": round(med["baseline"], 1),
        "ratio": round(med["pipeline"] / med["baseline"], 3) if med["baseline"] else None,
        "samples": {k: [(round(m, 1), r) for m, r in v] for k, v in samples.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--name", default=labmod.DEFAULT_NAME)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4)
    args = p.parse_args()
    state = labmod.load_state(args.name)
    if state is None:
        raise SystemExit(f"lab {args.name} is not up")
    from ovsflow.model import load_topology

    topo = load_topology(state.topology)
    net = topo.networks[state.vms[args.src]["network"]]
    print(json.dumps(compare(state, args.src, args.dst, kind=net.tunnel, vni=net.vni,
                             rounds=args.rounds, seconds=args.seconds), indent=2))


if __name__ == "__main__":
    main()
