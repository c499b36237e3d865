"""Properties over random valid topologies (hypothesis).

1. No frame ever crosses networks: broadcasts, ARP and unicasts from every port, before and after
   learning, are delivered only inside the sender's network, carry only its key over tunnels, and
   reach exactly the ports they should (broadcast: every other port of the network; unicast: the
   one port of the network with that MAC, if any).
2. Every rendered program loads into a real OVS (`--bundle replace-flows`, then `diff-flows`
   finds no difference).

Topologies: 1-5 hosts, 1-4 networks mixing vxlan/gre/geneve (and learn/l2pop), 0-8 ports, MACs
and IPs drawn from small pools so that different networks overlap on purpose.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovsflow.compiler import compile_host
from ovsflow.evaluator import Fabric, FabricResult
from ovsflow.model import Topology, load_topology_data
from ovsflow.ofctl import flow_lines
from ovsflow.packet import BROADCAST, Frame
from ovsflow.program import OPENFLOW_VERSIONS, HostProgram

TUNNELS = ["vxlan", "gre", "geneve"]
MAC_POOL = [f"02:00:00:00:00:{i:02x}" for i in range(1, 9)]
IP_POOL = [f"198.51.100.{i}" for i in range(1, 9)]


@st.composite
def topologies(draw, modes: tuple[str, ...] = ("learn", "l2pop")) -> dict:
    """A topology dict that ovsflow.model accepts (valid by construction)."""
    n_hosts = draw(st.integers(1, 5))
    hosts = {f"hv{i + 1}": {"vtep": f"192.0.2.{11 + i}"} for i in range(n_hosts)}
    n_nets = draw(st.integers(1, 4))
    vnis = draw(st.lists(st.integers(1, 2**24 - 1), min_size=n_nets, max_size=n_nets, unique=True))
    networks = {
        f"net{i}": {
            "vni": vni,
            "tunnel": draw(st.sampled_from(TUNNELS)),
            "mode": draw(st.sampled_from(modes)),
            "subnet": "198.51.100.0/24",
        }
        for i, vni in enumerate(vnis)
    }
    ports: dict[str, dict] = {}
    used: set[tuple[str, str]] = set()
    for j in range(draw(st.integers(0, 8))):
        net = draw(st.sampled_from(sorted(networks)))
        m = draw(st.sampled_from([x for x in MAC_POOL if (net, x) not in used]))
        ip = draw(st.sampled_from([x for x in IP_POOL if (net, x) not in used]))
        used |= {(net, m), (net, ip)}
        ports[f"p{j}"] = {"host": draw(st.sampled_from(sorted(hosts))), "network": net,
                          "mac": m, "ip": ip}
    return {"hosts": hosts, "networks": networks, "ports": ports}


def compile_all_hosts(data: dict, datapath_type: str | None = None) -> tuple[Topology, list[HostProgram]]:
    topo = load_topology_data(data, source="hypothesis")
    return topo, [compile_host(topo, h, datapath_type) for h in sorted(topo.hosts)]


def check_isolated(topo: Topology, res: FabricResult, sender: str, what: str) -> list[str]:
    """Assert the frame stayed in the sender's network; return the receiving port names."""
    by_iface = {(p.host, p.iface): p for p in topo.ports.values()}
    net = topo.networks[topo.ports[sender].network]
    ctx = f"{what} from {sender} ({net.name}, {net.tunnel} {net.vni:#x})"
    assert not res.trace.ambiguities, f"{ctx}: same-priority overlap\n{res.trace}"
    got = []
    for e in res.deliveries:
        p = by_iface.get((e.host, e.port))
        assert p is not None, f"{ctx}: delivered to unknown port {e}\n{res.trace}"
        assert p.network == net.name, f"{ctx}: CROSSED into {p.name} ({p.network})\n{res.trace}"
        assert e.frame.vlan is None, f"{ctx}: tagged frame delivered to {p.name}\n{res.trace}"
        got.append(p.name)
    for e in res.tunnel_hops:
        assert (e.type, e.tun_id) == (net.tunnel, net.vni), f"{ctx}: wrong tunnel/key {e}\n{res.trace}"
    assert not res.lost, f"{ctx}: tunnel frames nobody accepted: {res.lost}\n{res.trace}"
    assert len(got) == len(set(got)), f"{ctx}: duplicate deliveries {got}\n{res.trace}"
    return sorted(got)


@settings(max_examples=60, deadline=None)
@given(data=topologies(), order=st.randoms(use_true_random=False))
def test_no_frame_crosses_networks(data: dict, order) -> None:
    topo, programs = compile_all_hosts(data)
    fabric = Fabric(programs)
    ports = sorted(topo.ports)
    order.shuffle(ports)

    def send(name: str, frame: Frame) -> FabricResult:
        p = topo.ports[name]
        return fabric.inject(p.host, p.iface, frame)

    def peers(name: str) -> list[str]:
        net = topo.ports[name].network
        return sorted(q for q in topo.ports if q != name and topo.ports[q].network == net)

    for rnd in ("before learning", "after learning"):
        for a in ports:
            pa = topo.ports[a]
            res = send(a, Frame.ethernet(pa.mac, BROADCAST, payload=f"bcast {a}"))
            assert check_isolated(topo, res, a, f"broadcast {rnd}") == peers(a), res.trace
            res = send(a, Frame.arp_request(pa.mac, pa.ip, "198.51.100.200", payload=f"arp {a}"))
            check_isolated(topo, res, a, f"ARP request {rnd}")
        for a in ports:
            for b in ports:
                if a == b:
                    continue
                pa, pb = topo.ports[a], topo.ports[b]
                res = send(a, Frame.ethernet(pa.mac, pb.mac, payload=f"{a}>{b}"))
                got = check_isolated(topo, res, a, f"unicast to {b}'s MAC {rnd}")
                want = sorted(q for q in peers(a) if topo.ports[q].mac == pb.mac)
                assert got == want, f"unicast {a}>{b} {rnd}: got {got}, want {want}\n{res.trace}"
    # Learning never mixes networks either: every learned entry's VLAN is a local one of its host.
    for h in fabric.hosts.values():
        vlans = set(h.program.local_vlans.values())
        for f in h.bridge("tun").flows():
            tci = f.match_dict.get("vlan_tci")
            if isinstance(tci, tuple) and tci[1] == 0x0FFF:
                assert tci[0] in vlans, f"{h.name}: learned into unknown VLAN: {f}"


def test_strategy_makes_overlapping_networks() -> None:
    """The strategy must actually produce the hard case: same MAC in two networks."""
    seen = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(topologies())
    def probe(data: dict) -> None:
        load_topology_data(data, source="probe")  # always valid
        macs: dict[str, set[str]] = {}
        for p in data["ports"].values():
            macs.setdefault(p["mac"], set()).add(p["network"])
        seen.append(any(len(v) > 1 for v in macs.values()))

    probe()
    assert any(seen)


# ---------------------------------------------------------------------------------------------
# Every rendered program loads into real OVS.

PROTOCOLS = ",".join(OPENFLOW_VERSIONS)


def load_into_ovs(ovs, program: HostProgram, workdir: Path) -> None:
    """Fresh bridges with the program's patch and tunnel ports, then the flows in one bundle;
    `diff-flows` must then find nothing. VM ports are left out: OVS accepts flows naming port
    numbers it does not have, and the render script's full run is tested elsewhere."""
    names = [b.name for b in program.bridges]
    args: list[str] = []
    for n in names:
        args += ["--", "--if-exists", "del-br", n]
    ovs.vsctl(*args[1:])
    args = []
    for b in program.bridges:
        args += ["--", "add-br", b.name, "--", "set", "Bridge", b.name,
                 f"datapath_type={b.datapath_type}", "fail_mode=secure", f"protocols={PROTOCOLS}"]
        for p in b.ports:
            if not p.type:
                continue
            args += ["--", "add-port", b.name, p.name, "--", "set", "Interface", p.name,
                     f"type={p.type}", f"ofport_request={p.ofport}"]
            args += [f"options:{k}={v}" for k, v in p.options]
    ovs.vsctl(*args[1:])
    for b in program.bridges:
        target = ovs.mgmt(b.name)
        if b.groups:
            groups = workdir / f"{program.host}-{b.name}.groups"
            groups.write_text("".join(g.ofctl() + "\n" for g in b.groups))
            ovs.ofctl("add-groups", target, str(groups))
        flows = workdir / f"{program.host}-{b.name}.flows"
        flows.write_text("\n".join(flow_lines(b, comments=False)) + "\n")
        ovs.ofctl("--bundle", "replace-flows", target, str(flows))
        diff = ovs.ofctl("diff-flows", target, str(flows))  # raises on exit 2 (differences)
        assert diff.strip() == "", f"{program.host}/{b.name}: switch differs:\n{diff}"
        dumped = ovs.dump_flows(b.name)
        assert len(dumped) == len(b.flows), f"{program.host}/{b.name}: {len(dumped)} != {len(b.flows)}"


@pytest.mark.ovs
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=topologies())
def test_every_rendered_program_loads_into_ovs(ovs, data: dict) -> None:
    # One private OVS for all examples; each example starts from deleted bridges.
    _, programs = compile_all_hosts(data, "netdev")  # no kernel datapath here (docs/facts.md)
    with tempfile.TemporaryDirectory(dir=ovs.workdir) as tmp:
        for program in programs:
            load_into_ovs(ovs, program, Path(tmp))
