"""The rendered script is safe whatever the file's name or contents: it parses (`sh -n`), and run
with stub ovs-vsctl/ovs-ofctl that record their arguments it executes nothing else; limits the
switch's numbering cannot exceed are validation errors naming the limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovsflow.graph import TopologyGraph
from ovsflow.limits import TUNNEL_OFPORTS, VM_OFPORTS
from ovsflow.model import TopologyError, load_topology, load_topology_data
from ovsflow.render import render_script

ROOT = Path(__file__).resolve().parent.parent
TOPO = """\
hosts:
  hv1: {vtep: 192.0.2.11, bridges: {int: br-int.x, tun: br_tun-1}}
  hv2: {vtep: 192.0.2.12}
networks:
  blue: {vni: 101, mode: l2pop, subnet: 198.51.100.0/24}
  red: {vni: 102, tunnel: gre}
ports:
  vm.1-a_b: {host: hv1, network: blue, mac: "02:00:00:00:01:01", ip: 198.51.100.1, ipv6: "2001:db8::1"}
  vm2: {host: hv2, network: blue, mac: "02:00:00:00:01:02", ip: 198.51.100.2}
  vm3: {host: hv1, network: red, mac: "02:00:00:00:02:01", iface: "x.y-z_0"}
  vm4: {host: hv2, network: red, mac: "02:00:00:00:02:02"}
controller: {openflow: "tcp:127.0.0.1:6653"}
"""
HOSTILE_NAMES = ["t\n$(touch {m})\n.yaml", "t;touch {m};'\".yaml", "t`touch {m}`\r\x1b[2J.yaml", "$(touch {m}) #.yaml"]
STUB = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "{log}"
case "$*" in *dump-flows*|*dump-groups*|*get-controller*|*--columns=name*) ;; esac
exit 0
"""


@pytest.mark.parametrize("template", HOSTILE_NAMES)
def test_script_from_hostile_file_name_runs_only_ovs_tools(tmp_path: Path, template: str) -> None:
    marker = tmp_path / "MARK"  # what `touch MARK` run by the script (cwd tmp_path) would create
    path = tmp_path / template.format(m="MARK")
    path.write_text(TOPO)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", "render", str(path), "--host", "hv1", "--dry-run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert all(ln.isprintable() for ln in script.splitlines())
    header = script.splitlines()[1]
    assert header.startswith("# ovsflow ") and ("\\n" in header) == ("\n" in template)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    stubs, log = tmp_path / "stubs", tmp_path / "argv.log"
    stubs.mkdir()
    for tool in ("ovs-vsctl", "ovs-ofctl"):
        (stubs / tool).write_text(STUB.replace("{log}", str(log)))
        (stubs / tool).chmod(0o755)
    run = subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True, cwd=tmp_path, timeout=60,
                         env={"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert not marker.exists()
    calls = log.read_text().splitlines()
    assert calls and all(c.split()[0] in ("ovs-vsctl", "ovs-ofctl") for c in calls)
    assert any("add-br br-int.x" in c for c in calls) and any("add-port br_tun-1" in c for c in calls)


@pytest.mark.parametrize("field", ["name", "host", "bridge"])
def test_render_refuses_unsafe_names_that_bypassed_validation(tmp_path: Path, field: str) -> None:
    """Defence in depth: a Topology built without validation cannot put a shell word into the script."""
    path = tmp_path / "t.yaml"
    path.write_text(TOPO)
    topo = load_topology(path)
    bad = "x$(touch y)"
    if field == "name":
        topo.ports["vm3"] = topo.ports["vm3"]._replace(iface=bad)
    elif field == "host":
        topo.hosts[bad] = topo.hosts.pop("hv1")._replace(name=bad)
        for k, p in list(topo.ports.items()):
            if p.host == "hv1":
                topo.ports[k] = p._replace(host=bad)
    else:
        topo.hosts["hv1"] = topo.hosts["hv1"]._replace(bridge_int=bad)
    host = bad if field == "host" else "hv1"
    with pytest.raises(ValueError, match="refusing to put"):
        render_script(topo, host, graph=TopologyGraph(topo, focus=host))


def _ports_on_one_host(n: int) -> dict:
    return {
        "hosts": {"hv1": {"vtep": "192.0.2.1"}},
        "networks": {"n": {"vni": 1}},
        "ports": {f"p{i}": {"host": "hv1", "network": "n", "mac": f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                            "iface": f"t{i}"} for i in range(n)},
    }


def test_ports_per_host_limit_is_a_validation_error() -> None:
    load_topology_data(_ports_on_one_host(len(VM_OFPORTS)))  # exactly full: fine
    with pytest.raises(TopologyError) as exc:
        load_topology_data(_ports_on_one_host(len(VM_OFPORTS) + 1))
    assert [str(p) for p in exc.value.problems] == [
        "<topology>: hosts.hv1: has 32767 ports; at most 32766 fit on its integration bridge (OpenFlow ports 2-32767) (32767)"]


def test_tunnels_per_host_limit_is_a_validation_error() -> None:
    hosts = len(TUNNEL_OFPORTS) // 3 + 2  # every host shares three networks (vxlan, gre, geneve) with all others
    data = {
        "hosts": {f"h{i}": {"vtep": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"} for i in range(1, hosts + 1)},
        "networks": {"a": {"vni": 1}, "b": {"vni": 2, "tunnel": "gre"}, "c": {"vni": 3, "tunnel": "geneve"}},
        "ports": {f"p{i}{n}": {"host": f"h{i}", "network": n, "mac": f"02:00:{i >> 16:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:0{'abc'.index(n)}"}  # noqa: E501
                  for i in range(1, hosts + 1) for n in "abc"},
    }
    with pytest.raises(TopologyError) as exc:
        load_topology_data(data)
    msgs = {p.message for p in exc.value.problems}
    assert msgs == {f"needs {3 * (hosts - 1)} tunnel ports; at most {len(TUNNEL_OFPORTS)} fit on its tunnel bridge (OpenFlow ports 32768-65279)"}  # noqa: E501
    assert len(exc.value.problems) == hosts
