"""Benchmark 2: bulk install into a private ovs-vswitchd, ovsflow's render script against OVS's own tools.

One host of an l2pop topology (one pre-installed unicast flow per remote VM, so the flow count is
whatever we ask for), loaded side by side in the same run, repetitions interleaved:
  render   - the rendered script on bridges that exist but hold no flows or groups
             (ovs-vsctl no-op transaction, groups bundle, `--bundle replace-flows` per bridge);
  bundle   - `ovs-ofctl -O OpenFlow14 add-groups` + `--bundle add-flows` of the same flow files;
  plain    - `ovs-ofctl add-groups` + `add-flows` (one flow-mod after another, no bundle);
  noop     - the rendered script again on a switch that already holds the program (must change nothing).
Needs root and Open vSwitch (private instance in its own network namespace, removed afterwards).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def topology(n_flows: int, remote_hosts: int = 50) -> dict:
    networks = 10
    data: dict = {"hosts": {"hv0": {"vtep": "198.18.0.1", "datapath_type": "netdev"}}, "networks": {}, "ports": {}}
    for h in range(1, remote_hosts + 1):
        data["hosts"][f"hv{h}"] = {"vtep": f"198.18.{h // 250}.{h % 250 + 2}"}
    for n in range(networks):
        data["networks"][f"net{n}"] = {"vni": 100 + n, "mode": "l2pop"}
        data["ports"][f"local{n}"] = {"host": "hv0", "network": f"net{n}", "mac": f"02:ff:00:00:00:{n:02x}"}
    for p in range(n_flows):
        data["ports"][f"p{p}"] = {
            "host": f"hv{1 + p % remote_hosts}", "network": f"net{p % networks}",
            "mac": f"02:00:00:{(p >> 16) & 0xff:02x}:{(p >> 8) & 0xff:02x}:{p & 0xff:02x}",
        }
    return data


def _clear(ovs, bridges: list[str]) -> None:
    for b in bridges:
        ovs.ofctl("del-flows", b)
        ovs.ofctl("del-groups", b)


def run(quick: bool = False) -> list[dict]:
    from ovsflow.compiler import compile_host
    from ovsflow.lab import netns as nsmod
    from ovsflow.lab.ovs import OvsInstance
    from ovsflow.model import load_topology_data
    from ovsflow.ofctl import flow_file, group_lines
    from ovsflow.render import script_for

    n_flows, reps = (2_000, 2) if quick else (50_000, 5)
    topo = load_topology_data(topology(n_flows), source="bench-install")
    program = compile_host(topo, "hv0")
    script = script_for(program, topo)
    total = sum(len(b.flows) for b in program.bridges)
    work = Path(tempfile.mkdtemp(prefix="ovsflow-bench-"))
    ns = f"ofb{os.getpid() % 100000}"
    ovs = OvsInstance("bench", work / "ovs", ns)
    env = {**os.environ, **ovs.env}
    files = {}
    for b in program.bridges:
        files[b.name] = (work / f"{b.name}.flows", work / f"{b.name}.groups")
        files[b.name][0].write_text(flow_file(b))
        files[b.name][1].write_text("\n".join(group_lines(b)) + "\n")
    names = [b.name for b in program.bridges]

    def sh(cmd: list[str] | str, **kw) -> float:
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, **kw)
        return time.perf_counter() - t

    def ofctl_load(bundle: bool) -> float:
        t = time.perf_counter()
        for b in program.bridges:
            if b.groups:
                subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "add-groups", b.name, str(files[b.name][1])], env=env, check=True)
            opts = ["--bundle"] if bundle else []
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", *opts, "add-flows", b.name, str(files[b.name][0])], env=env, check=True)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"render": [], "bundle": [], "plain": [], "noop": []}
    try:
        nsmod.netns_add(ns)
        ovs.start()
        for p in program.bridge("int").ports:
            if not p.type:
                nsmod.veth_add(p.name, ns, f"b{p.ofport}", ns)
        sh(["sh", "-s"], input=script, timeout=600)  # bridges and ports, once
        for _ in range(reps):
            _clear(ovs, names)
            times["render"].append(sh(["sh", "-s"], input=script, timeout=600))
            times["noop"].append(sh(["sh", "-s"], input=script, timeout=600))
            _clear(ovs, names)
            times["bundle"].append(ofctl_load(True))
            _clear(ovs, names)
            times["plain"].append(ofctl_load(False))
        loaded = sum(len(ovs.dump_flows(b)) for b in names)
    finally:
        ovs.stop()
        nsmod.netns_delete(ns)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [{
        "benchmark": "install", "case": f"one host, {total} flows ({n_flows} remote VMs, l2pop), {reps} reps",
        "figures": {
            "render script, empty bridges (s, median [min-max])": [med["render"], min(times["render"]), max(times["render"])],
            "ovs-ofctl --bundle add-flows (s, median [min-max])": [med["bundle"], min(times["bundle"]), max(times["bundle"])],
            "ovs-ofctl add-flows, no bundle (s, median [min-max])": [med["plain"], min(times["plain"]), max(times["plain"])],
            "render script again, nothing to change (s, median)": med["noop"],
            "render rate / --bundle rate (goal >= 0.8)": med["bundle"] / med["render"],
            "render flows/s": total / med["render"],
            "flows on the switch after the last load": loaded,
        },
        "goal": "ovsflow's path >= 0.8x the rate of ovs-ofctl --bundle add-flows",
        "raw": {"times": times, "flows": total},
    }]
