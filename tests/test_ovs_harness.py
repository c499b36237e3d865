"""The private-OVS harness itself: start, program, dump, two at once, stop cleanly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ovsflow.lab import netns as nsmod
from ovsflow.lab.ovs import OvsInstance, pid_is, read_pid

pytestmark = pytest.mark.ovs


def test_start_bridge_flow_dump_stop(ovs: OvsInstance) -> None:
    assert ovs.running()
    ovs.add_bridge("br-test")
    assert ovs.vsctl("get", "bridge", "br-test", "datapath_type").strip() == "netdev"
    ovs.ofctl("add-flow", "br-test", "table=3,priority=7,tun_id=0x65,actions=drop")
    flows = ovs.dump_flows("br-test", "table=3")
    assert flows == ["table=3, priority=7,tun_id=0x65 actions=drop"]
    # the management socket is where OVS_RUNDIR says, and the netdev datapath is in use
    assert Path(ovs.mgmt("br-test").removeprefix("unix:")).exists()
    assert "netdev@ovs-netdev" in ovs.appctl("dpif/show")
    pid = read_pid(ovs.vswitchd_pidfile)
    ovs.stop()
    assert pid is not None and not pid_is(pid, "ovs-vswitchd")
    assert not ovs.running()
    ovs.stop()  # idempotent


def test_env_reaches_instance_with_plain_commands(ovs: OvsInstance) -> None:
    """Rendered scripts call plain ovs-vsctl/ovs-ofctl with OVS_RUNDIR: that must reach this OVS."""
    ovs.add_bridge("br-x")
    script = "ovs-ofctl -O OpenFlow14 add-flow br-x priority=3,actions=drop && ovs-vsctl list-br\n"
    out = nsmod.run(["sh", "-e"], input=script, env=ovs.env).stdout
    assert out.split() == ["br-x"]
    assert "priority=3 actions=drop" in ovs.dump_flows("br-x")


def test_two_instances_in_two_namespaces(ovs_factory) -> None:
    a = ovs_factory("a")
    b = ovs_factory("b")
    assert a.netns != b.netns
    a.add_bridge("br-tun")
    b.add_bridge("br-tun")  # would fail with "tap device busy" if they shared a namespace
    a.ofctl("add-flow", "br-tun", "table=0,priority=1,actions=drop")
    assert "priority=1 actions=drop" in a.dump_flows("br-tun")
    assert "priority=1 actions=drop" not in b.dump_flows("br-tun")
    # each vswitchd really lives in its own namespace
    for inst in (a, b):
        pid = read_pid(inst.vswitchd_pidfile)
        assert pid in nsmod.netns_pids(inst.netns)


def test_stop_from_pidfiles_after_owner_lost(ovs_factory) -> None:
    """A new OvsInstance over the same workdir stops daemons another process started (crash case)."""
    first = ovs_factory("crash")
    pid = read_pid(first.vswitchd_pidfile)
    OvsInstance("again", first.workdir, first.netns).stop()
    assert pid is not None and not pid_is(pid, "ovs-vswitchd")
    assert not os.path.exists(f"/proc/{pid}/status") or not first.running()
