"""The evaluator agrees with real OVS: same tables and flows hit, same output ports, same learned flows.

A seed-003 host program is loaded into a private ovs-vswitchd; a sequence of frames (tunnel
arrivals that teach MACs, replies that use what was learned, foreign keys, spoofed sources) is
pushed through both the evaluator and `ovs-appctl ofproto/trace -generate` (which runs learn()).
For every frame the two must hit the same (bridge, table, priority) sequence and emit on the same
ports; at the end `ovs-ofctl diff-flows` between the evaluator's tables (static and learned) and
the switch must be empty. This is what lets the other evaluator tests stand in for OVS.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import MAC_POOL, topologies  # the same random topologies

from ovsflow.compiler import compile_host
from ovsflow.evaluator import Host, Result
from ovsflow.flow import Load, Output
from ovsflow.model import load_topology, load_topology_data
from ovsflow.ofctl import flow_lines
from ovsflow.packet import BROADCAST, Frame, mac
from ovsflow.program import OPENFLOW_VERSIONS, HostProgram
from ovsflow.trace_live import flow_spec, parse_ofproto_trace

DATA = Path(__file__).parent / "data"
PROTOCOLS = ",".join(OPENFLOW_VERSIONS)

pytestmark = pytest.mark.ovs


def load(ovs, program: HostProgram) -> None:
    """Bridges, every port (VM ports as internal ports so they exist), flows in one bundle each.
    Bridges of an earlier load are deleted first, so one OVS serves many examples."""
    ovs.vsctl(*[a for b in program.bridges for a in ("--", "--if-exists", "del-br", b.name)][1:])
    for b in program.bridges:
        args = ["add-br", b.name, "--", "set", "Bridge", b.name, f"datapath_type={b.datapath_type}",
                "fail_mode=secure", f"protocols={PROTOCOLS}"]
        for p in b.ports:
            args += ["--", "add-port", b.name, p.name, "--", "set", "Interface", p.name,
                     f"type={p.type or 'internal'}", f"ofport_request={p.ofport}"]
            args += [f"options:{k}={v}" for k, v in p.options]
        ovs.vsctl(*args)
        if b.groups:  # flows may name groups: groups first (OVS refuses a flow to a missing group)
            groups = ovs.workdir / f"{b.name}.groups"
            groups.write_text("".join(g.ofctl() + "\n" for g in b.groups))
            ovs.ofctl("add-groups", ovs.mgmt(b.name), str(groups))
        flows = ovs.workdir / f"{b.name}.flows"
        flows.write_text("\n".join(flow_lines(b, comments=False)) + "\n")
        ovs.ofctl("--bundle", "replace-flows", ovs.mgmt(b.name), str(flows))
    for b in program.bridges:
        got = {int(line.split(":")[0]) for line in
               ovs.vsctl("--bare", "--columns=ofport", "find", "Interface", "ofport>0").split()}
        assert {p.ofport for p in b.ports} <= got, f"OVS did not grant the requested ofports: {got}"


def parse_trace(text: str, patch_ports: dict[str, set[int]], in_port: int, tun_id: int):
    """(bridge, table, priority|None) per lookup and (bridge, port) per real output, in order: the
    package's ofproto/trace reader (ovsflow trace --live uses it), keys left out."""
    hits, outs = parse_ofproto_trace(text, patch_ports, {b: set() for b in patch_ports}, in_port, tun_id)
    return hits, [(b, port) for b, port, _ in outs]


def evaluator_view(r: Result):
    hits = [(b, t, f.priority if f is not None else None) for _, b, t, f in r.trace.hits()]
    return hits, [(e.bridge, e.ofport) for e in r.outputs]


@pytest.mark.parametrize("variant", ["seed003-vxlan.yaml", "seed003-gre.yaml", "seed003-mixed.yaml"])
def test_evaluator_agrees_with_ofproto_trace(ovs, variant: str):
    topo = load_topology(DATA / variant)
    program = compile_host(topo, "hv2", "netdev")
    load(ovs, program)
    host = Host(program)
    br_int, br_tun = program.bridge("int"), program.bridge("tun")
    patch = {b.name: {p.ofport for p in b.ports if p.type == "patch"} for b in program.bridges}
    vm = {p.name: br_int.port(p.iface).ofport for p in topo.ports.values() if p.host == "hv2"}

    def tunnel_from(host_name: str, network: str) -> int:
        net, vtep = topo.networks[network], topo.hosts[host_name].vtep
        return next(p.ofport for p in br_tun.ports
                    if p.type == net.tunnel and dict(p.options)["remote_ip"] == vtep)

    m1, m2, m3 = (f"02:00:00:00:00:0{i}" for i in (1, 2, 3))
    ip1, ip2, ip3 = (f"198.51.100.{i}" for i in (1, 2, 3))
    blue, red = topo.networks["blue"].vni, topo.networks["red"].vni
    steps = [
        # Tunnel arrivals: blue1's ARP request from hv1 and red3's from hv3 (both learned).
        ("blue1 asks", br_tun.name, tunnel_from("hv1", "blue"),
         Frame.arp_request(m1, ip1, ip2)),
        ("red3 asks", br_tun.name, tunnel_from("hv3", "red"), Frame.arp_request(m3, ip3, ip2)),
        # Replies from local VMs: each must use its own tenant's learned entry (same MAC space!).
        ("blue2 replies", br_int.name, vm["blue2"], Frame.arp_reply(m2, ip2, m1, ip1)),
        ("red2 replies", br_int.name, vm["red2"], Frame.arp_reply(m2, ip2, m3, ip3)),
        # red2 to MAC ...:01: learned only in blue, so red must flood.
        ("red2 to unlearned", br_int.name, vm["red2"], Frame.ethernet(m2, m1)),
        ("blue2 broadcast", br_int.name, vm["blue2"], Frame.ethernet(m2, BROADCAST)),
        ("blue2 spoofs", br_int.name, vm["blue2"], Frame.ethernet(m3, BROADCAST)),
        ("blue2 sends tagged", br_int.name, vm["blue2"], Frame.ethernet(m2, BROADCAST, vlan=5)),
        ("unknown key", br_tun.name, tunnel_from("hv1", "blue"), Frame.ethernet(m1, BROADCAST)),
        ("red key from hv1", br_tun.name, tunnel_from("hv1", "red"), Frame.ethernet(m1, BROADCAST)),
        ("unknown port", br_tun.name, 4242, Frame.ethernet(m1, BROADCAST)),
    ]
    keys = {"blue1 asks": blue, "red3 asks": red, "unknown key": 0x999, "red key from hv1": red}
    for name, bridge, in_port, frame in steps:
        if name in keys:
            frame = replace(frame, tun_id=keys[name])
        mine = evaluator_view(host.inject_ofport(bridge, in_port, frame))
        text = ovs.appctl("ofproto/trace", bridge, flow_spec(frame, in_port), "-generate")
        theirs = parse_trace(text, patch, in_port, frame.tun_id)
        assert mine == theirs, f"{name}: evaluator {mine}\nOVS {theirs}\n{text}"
        assert theirs[0], f"{name}: parsed no table lookups from\n{text}"

    # Learned flows, as OVS has them, equal the evaluator's (diff-flows ignores formatting).
    learned = host.bridge("tun").flows(cookie=0x6F76736600000001)
    assert len(learned) == 3  # blue1 and red3 from their requests, red's ...:01 from the last arrival
    expected = ovs.workdir / "expected-tun.flows"
    expected.write_text("".join(f"{f}\n" for f in host.bridge("tun").flows()))
    assert ovs.ofctl("diff-flows", ovs.mgmt(br_tun.name), str(expected)).strip() == ""
    # And the MAC learned per tenant went to the right tunnel with the right key.
    by_dst = {(f.match_dict["vlan_tci"][0], f.match_dict["dl_dst"]): f for f in learned}  # type: ignore[index]
    vb, vr = program.local_vlans["blue"], program.local_vlans["red"]
    assert set(by_dst) == {(vb, mac(m1)), (vr, mac(m3)), (vr, mac(m1))}
    for (vlan, dst), net, src in [((vb, m1), "blue", "hv1"), ((vr, m1), "red", "hv1"), ((vr, m3), "red", "hv3")]:
        f = by_dst[(vlan, mac(dst))]
        assert f.actions == (Load("vlan_tci", 0), Load("tun_id", topo.networks[net].vni),
                             Output(tunnel_from(src, net))), f


def compare(ovs, host: Host, patch: dict[str, set[int]], bridge: str, in_port: int, frame: Frame,
            what: str) -> None:
    mine = evaluator_view(host.inject_ofport(bridge, in_port, frame))
    text = ovs.appctl("ofproto/trace", bridge, flow_spec(frame, in_port), "-generate")
    theirs = parse_trace(text, patch, in_port, frame.tun_id)
    assert theirs[0], f"{what}: parsed no table lookups from\n{text}"
    assert mine == theirs, f"{what}: evaluator {mine}\nOVS {theirs}\n{text}"


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=topologies(), pick=st.integers(0, 4))
def test_evaluator_agrees_with_ovs_on_random_topologies(ovs, data: dict, pick: int):
    """Random topology, one of its hosts in OVS: tunnel arrivals with every key (and an unknown
    one), then broadcasts, ARP and unicasts from every local VM, traced by both, in order."""
    topo = load_topology_data(data, source="hypothesis")
    name = sorted(topo.hosts)[pick % len(topo.hosts)]
    program = compile_host(topo, name, "netdev")
    load(ovs, program)
    host = Host(program)
    patch = {b.name: {p.ofport for p in b.ports if p.type == "patch"} for b in program.bridges}
    br_int, br_tun = program.bridge("int"), program.bridge("tun")
    keys = sorted({n.vni for n in topo.networks.values()} | {0x999})
    for tp in br_tun.ports:
        if tp.type == "patch":
            continue
        for i, key in enumerate(keys):
            src = MAC_POOL[i % len(MAC_POOL)]
            frame = replace(Frame.ethernet(src, BROADCAST), tun_id=key)
            compare(ovs, host, patch, br_tun.name, tp.ofport, frame, f"{tp.name} key {key:#x}")
    for p in sorted(topo.ports.values(), key=lambda p: p.name):
        if p.host != name:
            continue
        ofport = br_int.port(p.iface).ofport
        frames = [Frame.ethernet(p.mac, BROADCAST), Frame.arp_request(p.mac, p.ip, "198.51.100.9")]
        frames += [Frame.ethernet(p.mac, m) for m in MAC_POOL[:3] if m != p.mac]
        for f in frames:
            compare(ovs, host, patch, br_int.name, ofport, f, f"{p.name}: {f}")
    expected = ovs.workdir / "expected-tun.flows"
    expected.write_text("".join(f"{f}\n" for f in host.bridge("tun").flows()))
    assert ovs.ofctl("diff-flows", ovs.mgmt(br_tun.name), str(expected)).strip() == ""
