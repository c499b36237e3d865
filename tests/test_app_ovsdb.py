"""ovsflow.ovsdb: bridges and ports through the python-ovs IDL against a real ovsdb-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovsflow import ovsdb
from ovsflow.compiler import compile_host
from ovsflow.model import load_topology

DATA = Path(__file__).parent / "data"


def columns(ovs, table: str, record: str, *cols: str) -> dict:
    out = ovs.vsctl("--format=json", "--columns=" + ",".join(cols), "list", table, record)
    data = json.loads(out)
    return dict(zip(data["headings"], data["data"][0]))


@pytest.mark.ovs
def test_ensure_host_creates_then_changes_nothing(ovs) -> None:
    program = compile_host(load_topology(DATA / "seed003-mixed.yaml"), "hv1")
    remote = f"unix:{ovs.db_sock}"
    first = ovsdb.ensure_host(remote, program, controller="tcp:127.0.0.1:6653", probe_ms=5000,
                              datapath_type="netdev")
    assert [ln for ln in first.lines if "created" in ln] and not first.flows_cleared
    for b in program.bridges:
        c = columns(ovs, "Bridge", b.name, "fail_mode", "protocols", "other_config", "datapath_type")
        assert c["fail_mode"] == "secure" and c["datapath_type"] == "netdev"
        assert sorted(c["protocols"][1]) == sorted(ovsdb.PROTOCOLS)
        assert ["datapath-id", f"{b.datapath_id:016x}"] in c["other_config"][1]
        assert ovs.vsctl("get-controller", b.name).split() == ["tcp:127.0.0.1:6653"]
        ports = set(ovs.vsctl("list-ports", b.name).split())
        assert ports == {p.name for p in b.ports}
        for p in b.ports:
            i = columns(ovs, "Interface", p.name, "type", "options", "ofport_request")
            assert i["ofport_request"] == p.ofport
            if p.type:
                assert i["type"] == p.type and sorted(map(tuple, i["options"][1])) == sorted(p.options)
        # The switch itself agrees: its datapath id is the one the live app looks for.
        assert f"dpid:{b.datapath_id:016x}" in ovs.ofctl("show", ovs.mgmt(b.name))
    # A flow on the bridge, then the same ensure again: nothing to commit, nothing cleared.
    tun = program.bridge("tun")
    ovs.ofctl("add-flow", ovs.mgmt(tun.name), "cookie=0x1,table=0,priority=9,in_port=1 actions=drop")
    again = ovsdb.ensure_host(remote, program, controller="tcp:127.0.0.1:6653", probe_ms=5000,
                              datapath_type="netdev")
    assert not again, again.lines
    assert ovs.dump_flows(tun.name, "cookie=0x1/-1")


@pytest.mark.ovs
def test_ensure_host_follows_topology_changes(ovs, tmp_path: Path) -> None:
    """A VTEP leaving: its tunnel port is removed; an operator's own port stays."""
    text = (DATA / "seed003-vxlan.yaml").read_text()
    remote = f"unix:{ovs.db_sock}"
    full = compile_host(load_topology(DATA / "seed003-vxlan.yaml"), "hv1")
    ovsdb.ensure_host(remote, full, datapath_type="netdev")
    ovs.vsctl("add-port", "br-tun", "mirror0", "--", "set", "Interface", "mirror0", "type=internal")
    fewer = tmp_path / "fewer.yaml"  # hv3's VMs are gone: hv1 no longer tunnels to it
    fewer.write_text("\n".join(ln for ln in text.splitlines() if "host: hv3" not in ln) + "\n")
    smaller = compile_host(load_topology(fewer), "hv1")
    gone = {p.name for p in full.bridge("tun").ports} - {p.name for p in smaller.bridge("tun").ports}
    assert gone, "the test topology change should remove a tunnel"
    changes = ovsdb.ensure_host(remote, smaller, datapath_type="netdev")
    assert any("stale port" in ln for ln in changes.lines)
    ports = set(ovs.vsctl("list-ports", "br-tun").split())
    assert ports == {p.name for p in smaller.bridge("tun").ports} | {"mirror0"}


def test_ovsdb_ensure_command(ovs) -> None:
    """The `ovsflow ovsdb-ensure` command: changes on the first run, none on the second."""
    import os
    import subprocess
    import sys

    topo = Path(__file__).parent / "data" / "seed003-vxlan.yaml"
    cmd = [sys.executable, "-m", "ovsflow.cli", "ovsdb-ensure", str(topo), "--host", "hv2",
           "--datapath-type", "netdev", "--controller", "tcp:127.0.0.1:6653"]
    env = {**os.environ, **ovs.env}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    assert not first.stdout.strip().endswith(": 0 change(s)"), first.stdout
    assert set(ovs.vsctl("list-br").split()) == {"br-int", "br-tun"}
    assert ovs.vsctl("get-controller", "br-tun").strip() == "tcp:127.0.0.1:6653"
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0 and second.stdout.strip() == "hv2: 0 change(s)", second.stdout + second.stderr
    bad = subprocess.run([*cmd[:6], "hv9"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "hosts.hv9: no such host" in bad.stderr
