"""Stable numbering on a real OVS: `ovsflow render --host` (applying) records the host's allocation
in br-int's external_ids and reads it back on the next run, so an edit with colliding newcomers (a
VNI folding onto an existing network's VLAN, a port name hashing onto an existing port's ofport, a
new VTEP whose tunnel name does) leaves every existing number where it was."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_render_ovs import diff_flows, make_vm_ifaces
from test_stable_numbering import colliding_ports, colliding_vtep, port

from ovsflow.allocation import EXTERNAL_ID, Allocation
from ovsflow.compiler import compile_host
from ovsflow.graph import tunnel_port_name
from ovsflow.lab.ovs import OvsInstance
from ovsflow.model import load_topology_data

pytestmark = pytest.mark.ovs


def topologies() -> tuple[dict[str, Any], dict[str, Any]]:
    existing, newcomer = colliding_ports()
    data: dict[str, Any] = {
        "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}},
        "networks": {"old": {"vni": 4195}},
        "ports": {existing: port("hv1", "old", 1), "o2": port("hv2", "old", 2)},
    }
    edited = copy.deepcopy(data)
    edited["networks"]["new"] = {"vni": 101}
    edited["ports"]["n1"] = port("hv1", "new", 3)
    edited["ports"]["n2"] = port("hv2", "new", 4)
    edited["ports"][newcomer] = port("hv1", "old", 5)
    edited["hosts"]["ha"] = {"vtep": colliding_vtep("192.0.2.12")}
    edited["ports"]["a1"] = port("ha", "old", 6)
    return data, edited


def render(path: Path, ovs: OvsInstance, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", "render", str(path), "--host", "hv1",
                           "--datapath-type", "netdev", *extra],
                          capture_output=True, text=True, env={**os.environ, **ovs.env}, timeout=120)


def recorded(ovs: OvsInstance) -> Allocation:
    text = ovs.vsctl("get", "Bridge", "br-int", f"external_ids:{EXTERNAL_ID}").strip()
    return Allocation.decode(json.loads(text) if text.startswith('"') else text)


def ofport(ovs: OvsInstance, iface: str) -> int:
    return int(ovs.vsctl("get", "Interface", iface, "ofport").strip())


def test_render_twice_with_a_colliding_edit_keeps_every_existing_number(ovs: OvsInstance, tmp_path: Path) -> None:
    data, edited = topologies()
    existing, newcomer = colliding_ports()
    tunnel = tunnel_port_name("vxlan", "192.0.2.12")
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(data))
    first = compile_host(load_topology_data(data, "v1"), "hv1", "netdev")
    make_vm_ifaces(ovs, first)
    proc = render(path, ovs)
    assert proc.returncode == 0, proc.stderr
    assert recorded(ovs) == first.allocation
    iface = f"tap{existing}"
    before = {"vlan": first.local_vlans["old"], "vm": ofport(ovs, iface), "tunnel": ofport(ovs, tunnel)}
    assert before == {"vlan": 101, "vm": first.allocation.vm_ofports[existing],
                      "tunnel": first.allocation.tunnel_ofports[tunnel]}

    path.write_text(json.dumps(edited))
    topo2 = load_topology_data(edited, "v2")
    fresh = compile_host(topo2, "hv1", "netdev")
    # without memory every one of the three would move (the colliding newcomers sort first)
    assert fresh.local_vlans["old"] != 101
    assert fresh.allocation.vm_ofports[existing] != before["vm"]
    assert fresh.allocation.tunnel_ofports[tunnel] != before["tunnel"]
    kept = compile_host(topo2, "hv1", "netdev", allocation=first.allocation)
    make_vm_ifaces(ovs, kept)
    # --dry-run is a pure function of its inputs unless told to read the switch
    dry = render(path, ovs, "--dry-run")
    remembering = render(path, ovs, "--dry-run", "--memory-from-switch")
    assert dry.returncode == remembering.returncode == 0
    assert "v=new:101,old:102;" in dry.stdout and "v=new:102,old:101;" in remembering.stdout
    proc = render(path, ovs)
    assert proc.returncode == 0, proc.stderr
    assert ofport(ovs, iface) == before["vm"] and ofport(ovs, tunnel) == before["tunnel"]
    assert ofport(ovs, f"tap{newcomer}") == kept.allocation.vm_ofports[newcomer] != before["vm"]
    assert recorded(ovs) == kept.allocation and kept.local_vlans == {"old": 101, "new": 102}
    for bridge in kept.bridges:
        d = diff_flows(ovs, bridge, tmp_path)
        assert d.returncode == 0 and d.stdout == "", d.stdout
    # and a third run (nothing edited) changes nothing
    again = render(path, ovs)
    assert again.returncode == 0 and recorded(ovs) == kept.allocation


def test_a_record_that_is_not_ovsflows_is_ignored_with_one_warning(ovs: OvsInstance, tmp_path: Path) -> None:
    data, _ = topologies()
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(data))
    program = compile_host(load_topology_data(data, "v1"), "hv1", "netdev")
    make_vm_ifaces(ovs, program)
    ovs.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev",
              f'external_ids:{EXTERNAL_ID}="v=old:1;x=$(reboot)"')
    proc = render(path, ovs)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "numbering afresh" in warnings[0]
    assert recorded(ovs) == program.allocation


def test_ovsdb_ensure_reads_and_records_the_same_memory(ovs: OvsInstance, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():  # python-ovs imports eventlet, which warns
        warnings.simplefilter("ignore")
        from ovsflow import ovsdb

    data, edited = topologies()
    existing, newcomer = colliding_ports()
    tunnel = tunnel_port_name("vxlan", "192.0.2.12")
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(data))
    remote = f"unix:{ovs.db_sock}"
    assert ovsdb.ensure_from_topology(str(path), "hv1", remote, datapath_type="netdev")
    first = compile_host(load_topology_data(data, "v1"), "hv1")
    assert recorded(ovs) == first.allocation
    path.write_text(json.dumps(edited))
    changes = ovsdb.ensure_from_topology(str(path), "hv1", remote, datapath_type="netdev")
    assert any("allocation recorded" in ln for ln in changes.lines)
    # the existing tunnel and VM port keep their ofport_request; the newcomers got free ones
    assert f"interface {tunnel}: ofport_request" not in "\n".join(changes.lines)
    assert int(ovs.vsctl("get", "Interface", tunnel, "ofport_request")) == first.allocation.tunnel_ofports[tunnel]
    kept = recorded(ovs)
    assert kept.vm_ofports[existing] == first.allocation.vm_ofports[existing] != kept.vm_ofports[newcomer]
    assert kept.vlans == {"old": 101, "new": 102}
    assert not ovsdb.ensure_from_topology(str(path), "hv1", remote, datapath_type="netdev")  # nothing to do
