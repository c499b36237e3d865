"""`ovsflow trace` without switches: the frame it builds, the path and its end, routed destinations,
--learned, TCP/UDP ports (fields tp_src/tp_dst), raw fields, the JSON, hostile options, and the
seed-003 trace that labs/03-seed003/README.md shows (so the README cannot rot)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ovsflow.cli import main
from ovsflow.fields import FIELDS, IPPROTO_TCP, IPPROTO_UDP, mac
from ovsflow.model import load_topology
from ovsflow.packet import Frame
from ovsflow.trace import Request, TraceError, Tracer, probe
from ovsflow.trace_format import FORMAT, to_json

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "labs" / "03-seed003" / "topology.yaml"
ROUTED = ROOT / "tests" / "data" / "routed.yaml"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["trace", *args])
    return r.exit_code, r.stdout, r.stderr


def test_tcp_udp_ports_are_registry_fields_of_a_frame() -> None:
    assert FIELDS["tp_src"].frame == "tp_src" and FIELDS["tp_dst"].bits == 16
    f = Frame.transport("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", IPPROTO_TCP, 1234, 80)
    assert (f.get("tp_src"), f.get("tp_dst"), f.nw_proto) == (1234, 80, IPPROTO_TCP)
    assert "tcp 1234>80" in str(f) and f.set("tp_dst", 443).tp_dst == 443
    assert Frame.icmp_echo("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2").tp_dst is None


def test_learn_network_unicast_floods_then_goes_straight_after_learning() -> None:
    tracer = Tracer(load_topology(SEED))
    cold = tracer.run(Request("vm1", to="vm2"))
    assert [(h, n) for h, n, _ in cold.delivered] == [("hv2", "vm2")]
    # flooded to both VTEPs of blue (VXLAN key 101); hv3 has no vm2 and drops at br-int to_vm
    assert sorted((s.egress.remote_ip, s.egress.tun_id, s.egress.type) for s in cold.legs) == [  # type: ignore[union-attr]
        ("192.0.2.12", 101, "vxlan"), ("192.0.2.13", 101, "vxlan")]
    assert [(s.host, s.table, why) for s, why in cold.dropped] == [("hv3", 20, "table miss: dropped")]
    warm = tracer.run(Request("vm1", to="vm2", learned=True))
    assert warm.learned >= 2 and len(warm.probe.warmup) == 2
    assert [s.egress.remote_ip for s in warm.legs] == ["192.0.2.12"] and not warm.dropped  # type: ignore[union-attr]
    assert any(s.flow is not None and s.flow.cookie == 0x6F76736600000001 for s in warm.steps)  # a learned flow hit
    # each trace runs on forks of the cached hosts: what --learned taught does not leak into the next trace
    again = tracer.run(Request("vm1", to="vm2"))
    assert len(again.legs) == 2 and again.learned == 0
    assert not [f for h in tracer._hosts.values() for b in h.bridges.values() for f in b.flows(cookie=0x6F76736600000001)]


def test_gre_tenant_and_cross_tenant() -> None:
    tracer = Tracer(load_topology(SEED))
    red = tracer.run(Request("vm4", to="vm5", kind="udp", l4_port=53))
    assert {(s.egress.type, s.egress.tun_id) for s in red.legs} == {("gre", 102)}  # type: ignore[union-attr]
    assert red.probe.frame.nw_proto == IPPROTO_UDP and red.probe.frame.tp_dst == 53
    cross = tracer.run(Request("vm1", to="vm5"))  # another tenant's MAC: flooded in blue only, never delivered
    assert cross.delivered == [] and {s.egress.tun_id for s in cross.legs} == {101}  # type: ignore[union-attr]
    assert "no router joins blue and red" in cross.probe.notes[0]


def test_routed_destination_goes_to_the_router_mac_and_says_so() -> None:
    topo = load_topology(ROUTED)
    tracer = Tracer(topo)
    r = tracer.run(Request("w1", to="d1"))
    assert r.probe.frame.eth_dst == mac(topo.routers["r1"].mac("web"))
    assert "routed by r1" in r.probe.notes[0] and "router's MAC" in r.probe.notes[0]
    assert [(h, n) for h, n, _ in r.delivered] == [("hv2", "d1")]
    assert [(s.egress.type, s.egress.tun_id) for s in r.legs] == [("gre", 6000)]  # type: ignore[union-attr]
    assert any(s.table == 12 and r.table_name(s.host, s.bridge, 12) == "route" for s in r.steps)
    # centralized r2: two legs (to hv3 with app's key, back with ops's key)
    c = tracer.run(Request("a1", to="o1"))
    assert [(s.host, s.egress.tun_id) for s in c.legs] == [("hv3", 7000), ("hv2", 8000)]  # type: ignore[union-attr]
    assert [(h, n) for h, n, _ in c.delivered] == [("hv2", "o1")]
    ttl = tracer.run(Request("a1", to="o1", fields=(("nw_ttl", "1"),)))
    assert [(s.host, why) for s, why in ttl.dropped] == [("hv3", "TTL expired")] and ttl.delivered == []
    # the gateway by address, and ARP for a routed destination asks for the gateway
    gw = tracer.run(Request("w1", dst_ip="198.51.100.1"))
    assert [(h, n) for h, n, _ in gw.delivered] == [("hv1", "w1")] and "gateway of web" in gw.probe.notes[0]
    arp = tracer.run(Request("w1", to="d1", kind="arp"))
    assert arp.probe.frame.arp_tpa == 0xC6336401 and arp.delivered[0][1] == "w1"


def test_json_is_the_documented_structure() -> None:
    doc = to_json(Tracer(load_topology(SEED)).run(Request("vm1", to="vm2")))
    assert doc["format"] == FORMAT and doc["source"] == {"port": "vm1", "host": "hv1", "iface": "tapvm1"}
    assert doc["delivered"] == [{"host": "hv2", "port": "vm2", "iface": "tapvm2"}]
    first = doc["steps"][0]
    assert (first["kind"], first["host"], first["bridge"], first["table"], first["table_name"]) == (
        "table", "hv1", "br-int", 0, "classify")
    assert first["flow"].startswith("cookie=0x6f76736600000000,table=0,") and first["cookie"] == "0x6f76736600000000"
    legs = sorted(doc["tunnels"], key=lambda t: t["dst_vtep"])
    assert legs[0] == {"from_host": "hv1", "to_host": "hv2", "type": "vxlan", "key": 101, "src_vtep": "192.0.2.11",
                       "dst_vtep": "192.0.2.12", "out_port": "vxlan-c000020c", "in_port": "vxlan-c000020b", "lost": None}
    assert doc["dropped"][0]["table_name"] == "to_vm"
    code, out, _ = run(str(SEED), "--from", "vm1", "--to", "vm2", "--json")
    assert code == 0 and json.loads(out) == doc


@pytest.mark.parametrize("args, message", [
    (["--from", "nope", "--to", "vm2"], "ovsflow trace: --from: unknown port (nope)"),
    (["--from", "vm1", "--to", "x\x1b[31m"], "ovsflow trace: --to: unknown port (x\\x1b[31m)"),
    (["--from", "vm1"], "ovsflow trace: destination: give --to PORT, --dst-ip IP or --dst-mac MAC"),
    (["--from", "vm1", "--to", "vm2", "--dst-ip", "198.51.100.2"], "ovsflow trace: --to: give --to alone, or --dst-ip/--dst-mac (vm2)"),
    (["--from", "vm1", "--dst-ip", "300.1.1.1"], "ovsflow trace: --dst-ip: not an IPv4 address (300.1.1.1)"),
    (["--from", "vm1", "--dst-ip", "198.51.100.99"],
     "ovsflow trace: --dst-ip: no port of network blue or of its router has this address (198.51.100.99)"),
    (["--from", "vm1", "--dst-mac", "02:00"], "ovsflow trace: --dst-mac: not a MAC address like aa:bb:cc:dd:ee:ff (02:00)"),
    (["--from", "vm1", "--to", "vm2", "--tcp", "70000"], "ovsflow trace: --tcp: a port number 0-65535 (70000)"),
    (["--from", "vm1", "--to", "vm2", "--udp", "-1"], "ovsflow trace: --udp: a port number 0-65535 (-1)"),
    (["--from", "vm1", "--to", "vm2", "--arp", "--tcp", "1"], "ovsflow trace: --tcp: one of --arp, --icmp, --tcp N, --udp N (--arp --tcp)"),
    (["--from", "vm1", "--to", "vm2", "--field", "nw_ttl"], "ovsflow trace: --field: not name=value (nw_ttl)"),
    (["--from", "vm1", "--to", "vm2", "--field", "bogus=1"], "ovsflow trace: --field: unknown field (bogus)"),
    (["--from", "vm1", "--to", "vm2", "--field", "nw_ttl=256"], "ovsflow trace: --field: nw_ttl holds 8 bits (256)"),
    (["--from", "vm1", "--to", "vm2", "--field", "dl_src=zz"], "ovsflow trace: --field: not a mac value for dl_src (zz)"),
    (["--from", "vm1", "--to", "vm2", "--field", "in_port=3"], "ovsflow trace: --field: in_port is where --from enters (in_port)"),
    (["--from", "vm1", "--to", "vm2", "--lab", "x"], "ovsflow trace: --lab: only with --live (x)"),
])
def test_hostile_options_are_one_line_exit_2(args: list[str], message: str) -> None:
    code, out, err = run(str(SEED), *args)
    assert (code, out, err) == (2, "", message + "\n")


def test_bad_topology_is_the_validators_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: {hv1: {vtep: 1.2.3.4}}\nnetworks: {n: {vni: 0}}\nports: {}\n")
    code, out, err = run(str(bad), "--from", "a", "--to", "b")
    assert code == 2 and out == "" and err.strip().splitlines() == [f"{bad}: networks.n.vni: must be >= 1 (0)"]


def test_raw_fields_and_vlan() -> None:
    topo = load_topology(SEED)
    p = probe(topo, Request("vm1", to="vm2", fields=(("dl_vlan", "5"), ("tp_dst", "7"))))
    assert p.frame.vlan == 5 and p.frame.tp_dst == 7
    r = Tracer(topo).run(Request("vm1", to="vm2", fields=(("dl_vlan", "5"),)))  # VMs may not send tagged frames
    assert r.delivered == [] and [(s.table, why) for s, why in r.dropped] == [(0, "table miss: dropped")]
    with pytest.raises(TraceError):
        probe(topo, Request("vm1", to="vm2", kind="bogus"))


def test_only_the_visited_hosts_are_compiled() -> None:
    tracer = Tracer(load_topology(SEED))
    r = tracer.run(Request("vm4", to="vm5", learned=False))
    assert r.hosts_compiled == ["hv1", "hv2", "hv3"]  # red floods to both of its other VTEPs
    tracer = Tracer(load_topology(ROOT / "labs" / "01-vxlan-on-the-wire" / "topology.yaml"))
    ports = sorted(tracer.topo.ports)
    r = tracer.run(Request(ports[0], to=ports[1]))
    assert set(tracer.programs) == set(r.hosts_compiled)


# ---------------------------------------------------------------------------------------------
# The lab README shows the command and its output: they must be what the command prints today.

README = ROOT / "labs" / "03-seed003" / "README.md"


def readme_blocks() -> list[tuple[str, str]]:
    """(command, output) of every ```console block starting with `$ ovsflow trace` in the README."""
    text = README.read_text()
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        first, _, rest = block.partition("\n")
        if first.startswith("$ ovsflow trace "):
            out.append((first[2:], rest))
    return out


def test_lab_readme_shows_the_seed003_trace_as_it_is() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 2, "labs/03-seed003/README.md lost its trace examples"
    assert any("--from vm1 --to vm2" in cmd and "--learned" not in cmd for cmd, _ in blocks)
    for cmd, shown in blocks:
        argv = cmd.split()[1:]
        proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", *argv], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == shown, f"README differs from `{cmd}`; regenerate it:\n{proc.stdout}"


def test_unchecked_hosts_trust_the_program_and_checked_ones_refuse_bad_flows() -> None:
    """Tracer builds hosts with check=False (the compiler checked the flows); the check still
    exists for anyone else: a flow OVS would refuse fails only when checking."""
    from ovsflow.compiler import compile_host
    from ovsflow.evaluator import EvaluationError, Host
    from ovsflow.flow import Flow, GotoTable
    from ovsflow.program import BridgeProgram, HostProgram

    program = compile_host(load_topology(SEED), "hv1")
    bad = Flow.make(20, 5, {}, (GotoTable(10),))  # goto backwards: ovs-ofctl refuses it
    br = program.bridges[0]
    broken = HostProgram(program.host, program.vtep, (BridgeProgram(br.name, br.role, br.datapath_type, br.datapath_id,
                                                                    br.ports, (*br.flows, bad)), program.bridges[1]))
    assert Host(broken, check=False).bridge("int").flows(table=20)[0] == bad
    with pytest.raises(EvaluationError):
        Host(broken)
