"""Topology loading: every bad input is one line `file: path: message (value)` and exit 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ovsflow.cli import main
from ovsflow.model import TopologyError, load_topology, load_topology_data

DATA = Path(__file__).parent / "data"

BASE = {
    "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}},
    "networks": {"blue": {"vni": 101, "subnet": "198.51.100.0/24"}, "red": {"vni": 102, "tunnel": "gre"}},
    "ports": {
        "vm1": {"host": "hv1", "network": "blue", "mac": "02:00:00:00:01:01", "ip": "198.51.100.1"},
        "vm2": {"host": "hv2", "network": "blue", "mac": "02:00:00:00:01:02", "ip": "198.51.100.2"},
        "vm3": {"host": "hv1", "network": "red", "mac": "02:00:00:00:01:01", "ip": "198.51.100.1"},
    },
}


def validate(tmp_path: Path, data: object, name: str = "topo.yaml") -> tuple[int, list[str]]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if name.endswith(".yaml") else json.dumps(data))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, [ln for ln in result.output.splitlines() if ln]


def mutate(path: str, value: object) -> dict:
    data = copy.deepcopy(BASE)
    keys = path.split(".")
    target = data
    for k in keys[:-1]:
        target = target[k]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


DELETE = object()


def test_base_is_valid(tmp_path: Path) -> None:
    code, out = validate(tmp_path, BASE)
    assert code == 0, out
    assert out == [f"{tmp_path / 'topo.yaml'}: ok (2 hosts, 2 networks, 3 ports)"]


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_shipped_topologies_are_valid(name: str) -> None:
    topo = load_topology(DATA / name)
    assert topo.hosts and topo.networks


# (field path to set, value, expected error path, a fragment of the message)
BAD = [
    ("networks.blue.vni", 0, "networks.blue.vni", "must be >= 1"),
    ("networks.blue.vni", 2**24, "networks.blue.vni", "must be <= 16777215"),
    ("networks.blue.vni", "101", "networks.blue.vni", "must be of type integer"),
    ("networks.red.vni", 101, "networks.red.vni", "VNI already used by blue"),
    ("networks.blue.tunnel", "ipip", "networks.blue.tunnel", "must be one of"),
    ("networks.blue.mode", "magic", "networks.blue.mode", "must be one of"),
    ("networks.blue.subnet", "198.51.100.1/24", "networks.blue.subnet", "not a valid IPv4 subnet"),
    ("networks.blue.gateway", "203.0.113.1", "networks.blue.gateway", "not inside subnet"),
    ("networks.red.gateway", "203.0.113.1", "networks.red.gateway", "a gateway needs a subnet"),
    ("networks.blue.colour", "blue", "networks.blue.colour", "unknown key"),
    ("hosts.hv2.vtep", "192.0.2.11", "hosts.hv2.vtep", "VTEP address already used by hv1"),
    ("hosts.hv2.vtep", "192.0.2.300", "hosts.hv2.vtep", "not a valid ipv4 address"),
    ("hosts.hv2.vtep", "224.0.0.1", "hosts.hv2.vtep", "not a usable unicast VTEP address"),
    ("hosts.hv2.vtep", DELETE, "hosts.hv2.vtep", "required key is missing"),
    ("hosts.hv2.datapath_type", "dpdk", "hosts.hv2.datapath_type", "must be one of"),
    ("hosts.hv1.bridges", {"int": "br0", "tun": "br0"}, "hosts.hv1.bridges.tun", "must differ"),
    ("ports.vm1.host", "hv9", "ports.vm1.host", "unknown host"),
    ("ports.vm1.network", "green", "ports.vm1.network", "unknown network"),
    ("ports.vm1.mac", "02:00:00:00:01", "ports.vm1.mac", "not a MAC address"),
    ("ports.vm1.mac", "01:00:5e:00:00:01", "ports.vm1.mac", "multicast MAC"),
    ("ports.vm2.mac", "02:00:00:00:01:01", "ports.vm2.mac", "MAC already used in network blue by port vm1"),
    ("ports.vm2.ip", "198.51.100.1", "ports.vm2.ip", "IP already used in network blue by port vm1"),
    ("ports.vm1.ip", "203.0.113.7", "ports.vm1.ip", "not inside subnet 198.51.100.0/24"),
    ("ports.vm1.ip", "198.51.100.255", "ports.vm1.ip", "network or broadcast address"),
    ("ports.vm1.iface", "a-very-long-interface", "ports.vm1.iface", "not an interface name"),
    ("ports.vm3.iface", "tapvm1", "ports.vm3.iface", "interface name already used on host hv1 by port vm1"),
    ("ports.vm3.iface", "br-int", "ports.vm3.iface", "clashes with a bridge"),
    ("ports.vm3.ofport", 1, "ports.vm3.ofport", "must be >= 2"),
    ("ports.vm1", "not-a-port", "ports.vm1", "must be of type object"),
    ("learn.hard_timeout", -1, "learn.hard_timeout", "must be >= 0"),
    ("hosts.bad name", {"vtep": "192.0.2.99"}, "hosts.bad name", "invalid key: not a name"),
]


@pytest.mark.parametrize("field,value,path,fragment", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_input_names_file_path_and_value(tmp_path: Path, field: str, value: object, path: str, fragment: str) -> None:
    data = mutate(field, value) if not field.startswith("learn") else {**copy.deepcopy(BASE), "learn": {"hard_timeout": value}}
    code, out = validate(tmp_path, data)
    assert code == 2
    file = str(tmp_path / "topo.yaml")
    lines = [ln for ln in out if ln.startswith(f"{file}: {path}: ")]
    assert lines, out
    assert fragment in lines[0], lines
    if value is not DELETE and not isinstance(value, dict):
        assert f"({value})" in lines[0] or f"({json.dumps(value)})" in lines[0], lines


def test_pinned_ofport_and_vlan_clashes(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["ports"]["vm1"]["ofport"] = 7
    data["ports"]["vm3"]["ofport"] = 7
    data["networks"]["blue"]["vlan"] = 9
    data["networks"]["red"]["vlan"] = 9
    code, out = validate(tmp_path, data)
    assert code == 2
    assert any(": ports.vm3.ofport: OpenFlow port already used on host hv1 by port vm1 (7)" in ln for ln in out), out
    assert any(": networks.red.vlan: local VLAN already pinned by network blue" in ln for ln in out), out


def test_more_than_4094_networks_on_one_host(tmp_path: Path) -> None:
    data = {"hosts": {"hv1": {"vtep": "192.0.2.11"}}, "networks": {}, "ports": {}}
    for i in range(4095):
        data["networks"][f"n{i}"] = {"vni": i + 1}
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"
        data["ports"][f"p{i}"] = {"host": "hv1", "network": f"n{i}", "mac": mac}
    code, out = validate(tmp_path, data, "big.json")
    assert code == 2
    assert out == [f"{tmp_path / 'big.json'}: hosts.hv1: has ports on 4095 networks; at most 4094 fit in its local VLAN space (4095)"]
    del data["ports"]["p4094"]
    code, out = validate(tmp_path, data, "big.json")
    assert code == 0, out[:3]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    data = mutate("networks.blue.vni", 0)
    data["ports"]["vm2"]["mac"] = "nonsense"
    code, out = validate(tmp_path, data)
    assert code == 2
    assert len(out) == 2 and ": networks.blue.vni: " in out[0] and ": ports.vm2.mac: " in out[1]


def test_yaml_12_scalars_and_duplicate_keys(tmp_path: Path) -> None:
    # YAML 1.1 would read 12:00:00:00:01:01 as a base-60 integer and `no` as false.
    text = (
        "hosts: {no: {vtep: 192.0.2.11}}\n"
        "networks: {blue: {vni: 0x65}}\n"
        "ports: {vm1: {host: no, network: blue, mac: 12:00:00:00:01:01}}\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(text)
    topo = load_topology(path)
    assert topo.ports["vm1"].mac == "12:00:00:00:01:01"
    assert topo.ports["vm1"].host == "no" and "no" in topo.hosts
    assert topo.networks["blue"].vni == 101
    path.write_text(text + "networks: {}\n")
    with pytest.raises(TopologyError) as exc:
        load_topology(path)
    assert str(exc.value).startswith(f"{path}: (top): invalid YAML at line 4 column 1: duplicate key 'networks'")
    jpath = tmp_path / "t.json"
    jpath.write_text('{"hosts": {}, "hosts": {}, "networks": {}}')
    with pytest.raises(TopologyError) as exc:
        load_topology(jpath)
    assert "duplicate key 'hosts'" in str(exc.value)


GARBAGE = [
    ("empty.yaml", b""),
    ("list.yaml", b"- a\n- b\n"),
    ("scalar.json", b"42"),
    ("broken.yaml", b"hosts: [\n"),
    ("tabs.yaml", b"hosts:\n\t- x\n"),
    ("binary.yaml", bytes(range(256))),
    ("broken.json", b'{"hosts": '),
    ("nulls.yaml", b"hosts: ~\nnetworks: ~\nports: ~\n"),
    ("deep.yaml", b"hosts: {hv1: {vtep: [1, 2]}}\nnetworks: {n: {vni: {a: 1}}}\n"),
]


@pytest.mark.parametrize("name,content", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_never_tracebacks(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for args in (["validate", str(path)], ["render", str(path), "--host", "hv1", "--dry-run"]):
        proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines and all(ln.startswith(f"{path}: ") for ln in lines), lines


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", "validate", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot read file" in proc.stderr


def test_load_topology_data_source_name() -> None:
    with pytest.raises(TopologyError) as exc:
        load_topology_data({"hosts": {}, "networks": {"n": {"vni": -1}}}, source="inline")
    assert str(exc.value) == "inline: networks.n.vni: must be >= 1 (-1)"
