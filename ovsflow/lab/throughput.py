"""VM-to-VM TCP throughput in a running lab: ovsflow's pipeline vs a hand-written minimal program.

Why a baseline in the same run: the userspace datapath, not the pipeline, is the ceiling here and
the machine is shared, so only a ratio measured side by side means anything. The baseline keeps the
same bridges, ports and tunnel and replaces the flows with the least that still forwards: two flows
per bridge (VM <-> patch on br-int; patch <-> tunnel with the VNI set on br-tun). Rounds alternate
between the two programs so drifting load hits both alike.

  python -m ovsflow.lab.throughput SRC DST [--name NAME] [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from . import lab as labmod
from . import netns as ns
from .state import LabState


def _iperf(state: LabState, src: str, dst: str, seconds: float) -> tuple[float, int]:
    """(Mbit/s received, retransmits) of one iperf3 run from VM src to VM dst."""
    server = subprocess.Popen(["ip", "netns", "exec", state.vms[dst]["netns"], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = ns.run(["iperf3", "-c", state.vms[dst]["ip"], "-t", str(seconds), "-J"],
                     netns=state.vms[src]["netns"], timeout=seconds + 30).stdout
        end = json.loads(out)["end"]
        return end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))
    finally:
        server.kill()
        server.wait()


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
