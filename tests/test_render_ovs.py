"""Every render loads into a real ovs-vswitchd, matches it flow for flow, and is idempotent."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ovsflow.compiler import compile_host
from ovsflow.lab import netns as nsmod
from ovsflow.lab.ovs import OvsInstance
from ovsflow.model import load_topology, load_topology_data
from ovsflow.ofctl import flow_file, group_lines
from ovsflow.render import render_script

pytestmark = pytest.mark.ovs
DATA = Path(__file__).parent / "data"


def make_vm_ifaces(ovs: OvsInstance, program) -> None:
    """The VM-side interfaces the script adds to br-int must exist (the lab makes them as veths)."""
    for p in program.bridge("int").ports:
        if not p.type and not nsmod.link_exists(p.name, ovs.netns):
            nsmod.veth_add(p.name, ovs.netns, f"v{p.ofport}", ovs.netns)


def run_script(ovs: OvsInstance, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True, env={**os.environ, **ovs.env}, timeout=60)


def diff_flows(ovs: OvsInstance, bridge, tmp_path: Path) -> subprocess.CompletedProcess:
    f = tmp_path / f"{bridge.name}.flows"
    f.write_text(flow_file(bridge))
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "diff-flows", str(f), bridge.name],
                          capture_output=True, text=True, env={**os.environ, **ovs.env}, timeout=30)


def switch_groups(ovs: OvsInstance, bridge: str) -> list[str]:
    out = ovs.ofctl("dump-groups", bridge)
    return sorted(ln.strip() for ln in out.splitlines() if ln.strip().startswith("group_id="))


def static_flows_with_age(ovs: OvsInstance, bridge: str) -> dict[str, float]:
    out = {}
    for line in ovs.dump_flows(bridge, stats=True):
        m = re.search(r"duration=([0-9.]+)s", line)
        key = re.sub(r"duration=[0-9.]+s, |n_packets=\d+, |n_bytes=\d+, |idle_age=\d+, |hard_age=\d+, ", "", line).strip()
        out[key] = float(m.group(1)) if m else -1.0
    return out


@pytest.mark.parametrize("variant", ["vxlan", "gre", "mixed", "l2pop"])
def test_seed003_render_loads_and_matches_every_host(ovs_factory, tmp_path: Path, variant: str) -> None:
    topo = load_topology(DATA / f"seed003-{variant}.yaml")
    for host in sorted(topo.hosts):
        ovs = ovs_factory(host)
        program = compile_host(topo, host, "netdev")
        make_vm_ifaces(ovs, program)
        script = render_script(topo, host, "netdev")
        first = run_script(ovs, script)
        assert first.returncode == 0, first.stderr
        for bridge in program.bridges:
            d = diff_flows(ovs, bridge, tmp_path)
            assert d.returncode == 0 and d.stdout == "", f"{host} {bridge.name}:\n{d.stdout}{d.stderr}"
            assert switch_groups(ovs, bridge.name) == sorted(group_lines(bridge)), (host, bridge.name)
            # ports got the OpenFlow numbers the flows use
            for p in bridge.ports:
                assert ovs.vsctl("get", "Interface", p.name, "ofport").strip() == str(p.ofport), (host, p)
            assert ovs.vsctl("get", "Bridge", bridge.name, "fail_mode").strip() == "secure"
            assert ovs.vsctl("get", "Bridge", bridge.name, "datapath_type").strip() == "netdev"
            dpid = ovs.vsctl("get", "Bridge", bridge.name, "datapath_id").strip().strip('"')
            assert int(dpid, 16) == bridge.datapath_id


def test_second_run_changes_nothing_and_keeps_learned_and_foreign_flows(ovs, tmp_path: Path) -> None:
    topo = load_topology(DATA / "seed003-mixed.yaml")
    program = compile_host(topo, "hv2", "netdev")
    make_vm_ifaces(ovs, program)
    script = render_script(topo, "hv2", "netdev")
    assert run_script(ovs, script).returncode == 0
    tun = program.bridge("tun")
    learned = ("cookie=0x6f76736600000001,table=20,hard_timeout=300,priority=1,vlan_tci=0x0065/0x0fff,"
               "dl_dst=02:00:00:00:00:01 actions=load:0->NXM_OF_VLAN_TCI[],load:0x65->NXM_NX_TUN_ID[],"
               f"output:{tun.ports[1].ofport}")
    ovs.ofctl("add-flow", tun.name, learned)
    ovs.ofctl("add-flow", tun.name, "cookie=0x99,table=30,priority=5,actions=drop")
    db_before = ovs.vsctl("--format=json", "--columns=name,ofport,options,type", "list", "Interface")
    groups_before = switch_groups(ovs, tun.name)
    assert len(groups_before) == 2
    before = static_flows_with_age(ovs, tun.name)
    time.sleep(1.0)
    second = run_script(ovs, script)
    assert second.returncode == 0, second.stderr
    assert "removing stale port" not in second.stdout
    after = static_flows_with_age(ovs, tun.name)
    assert set(after) == set(before)  # same flows, learned and foreign ones included
    for key, age in after.items():
        assert age >= before[key] + 0.9, f"flow was re-added (age {before[key]} -> {age}): {key}"
    assert ovs.vsctl("--format=json", "--columns=name,ofport,options,type", "list", "Interface") == db_before
    assert switch_groups(ovs, tun.name) == groups_before


def test_topology_change_removes_stale_ports_and_flows(ovs, tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "seed003-mixed.yaml").read_text())
    topo = load_topology_data(data, "v1")
    program = compile_host(topo, "hv1", "netdev")
    make_vm_ifaces(ovs, program)
    assert run_script(ovs, render_script(topo, "hv1", "netdev")).returncode == 0
    # red leaves hv1 (and with it the GRE tunnels); blue's hv3 VM moves to hv2
    del data["ports"]["red1"]
    data["ports"]["blue3"]["host"] = "hv2"
    data["ports"]["blue3"]["mac"] = "02:00:00:00:00:33"
    topo2 = load_topology_data(data, "v2")
    program2 = compile_host(topo2, "hv1", "netdev")
    proc = run_script(ovs, render_script(topo2, "hv1", "netdev"))
    assert proc.returncode == 0, proc.stderr
    removed = set(re.findall(r"removing stale port (\S+) from", proc.stdout))
    assert removed == {"tapred1", "gre-c000020c", "gre-c000020d", "vxlan-c000020d"}
    for bridge in program2.bridges:
        d = diff_flows(ovs, bridge, tmp_path)
        assert d.returncode == 0 and d.stdout == "", d.stdout
        ports = set(ovs.vsctl("list-ports", bridge.name).split())
        assert ports == {p.name for p in bridge.ports}
        assert switch_groups(ovs, bridge.name) == sorted(group_lines(bridge))
    # red's flood group is gone, blue's group now replicates to hv2 only
    assert [g.group_id for g in program2.bridge("tun").groups] == [101]


def test_apply_without_dry_run_programs_the_switch(ovs, tmp_path: Path) -> None:
    import os
    import sys

    topo_path = DATA / "seed003-vxlan.yaml"
    topo = load_topology(topo_path)
    program = compile_host(topo, "hv3", "netdev")
    make_vm_ifaces(ovs, program)
    proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", "render", str(topo_path), "--host", "hv3",
                           "--datapath-type", "netdev"], capture_output=True, text=True, env={**os.environ, **ovs.env})
    assert proc.returncode == 0, proc.stderr
    for bridge in program.bridges:
        d = diff_flows(ovs, bridge, tmp_path)
        assert d.returncode == 0 and d.stdout == "", d.stdout
