"""Stable numbering in the live controller's core (fake switches, no Ryu, no root): a reload
compiles each host with the numbers in use, so a colliding newcomer renumbers nothing and the
switches of unaffected networks and ports get no flow-mod; after a restart the switch's own port
numbers (port-desc) are the memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_controller_core import Clock, FakeSwitch, reconcile
from test_stable_numbering import colliding_ports, port_case, tunnel_case, vni_case

from ovsflow.compiler import compile_host
from ovsflow.controller import core as C
from ovsflow.flow import Flow
from ovsflow.graph import tunnel_port_name
from ovsflow.model import load_topology_data


def start(path: Path, data: dict[str, Any]) -> tuple[C.Core, dict[int, FakeSwitch]]:
    path.write_text(json.dumps(data))
    core = C.Core(str(path), Clock())
    assert core.reload("start") == []
    assert core.programs is not None
    sws = {d: FakeSwitch(d) for h in sorted(core.programs.topo.hosts) for d in core.programs.graph.datapath_ids(h)}
    for sw in sws.values():
        connect(core, sw)
    return core, sws


def connect(core: C.Core, sw: FakeSwitch, ports: dict[str, int] | None = None) -> None:
    conn = object()
    core.connected(sw.dpid, conn, sw.version, ports)
    reconcile(core, sw, conn)


def edit(core: C.Core, path: Path, data: dict[str, Any], sws: dict[int, FakeSwitch]) -> dict[int, list[tuple[str, Flow]]]:
    """Write the edited topology, reload, push the updates; the flow-mods each switch got."""
    for sw in sws.values():
        sw.flow_mods.clear()
    path.write_text(json.dumps(data))
    updates = core.reload("file change")
    assert updates is not None
    for u in updates:
        if u.dpid in sws:
            reconcile(core, sws[u.dpid], u.conn, "file change", u.moves)
    for dpid, sw in sws.items():
        target = core.programs.target(dpid)  # type: ignore[union-attr]
        assert target is not None and sw.program() == sorted(target.flows, key=Flow.sort_key)
    return {d: list(sw.flow_mods) for d, sw in sws.items()}


def dpids(core: C.Core, host: str) -> tuple[int, int]:
    assert core.programs is not None
    return core.programs.graph.datapath_ids(host)


def test_vni_101_beside_4195_adds_flows_and_touches_no_flow_of_the_old_network(tmp_path: Path) -> None:
    data, edited = vni_case()
    path = tmp_path / "t.json"
    core, sws = start(path, data)
    before = {d: dict(sw.flows) for d, sw in sws.items()}
    mods = edit(core, path, edited, sws)
    assert core.programs is not None
    assert core.programs.memory["hv1"].vlans == {"old": 101, "new": 102}
    assert all(not mods[d] for d in dpids(core, "hv2"))  # hv2 has no port on the new network
    hv1 = [m for d in dpids(core, "hv1") for m in mods[d]]
    assert hv1 and {c for c, _ in hv1} == {"add"}  # only the new network's flows
    for d in dpids(core, "hv1"):
        assert all(sws[d].flows.get(k) == f for k, f in before[d].items())
    # Without memory the old network would have moved to VLAN 102 on hv1:
    assert compile_host(load_topology_data(edited, "x"), "hv1").local_vlans["old"] == 102


def test_a_colliding_port_name_leaves_the_existing_ports_flows_alone(tmp_path: Path) -> None:
    data, edited = port_case()
    existing, newcomer = colliding_ports()
    path = tmp_path / "t.json"
    core, sws = start(path, data)
    assert core.programs is not None
    old_ofport = core.programs.memory["hv1"].vm_ofports[existing]
    int_dpid, tun_dpid = dpids(core, "hv1")
    mac = int(data["ports"][existing]["mac"].replace(":", ""), 16)
    own = {k: f for k, f in sws[int_dpid].flows.items()
           if dict(f.match).get("in_port") == old_ofport or dict(f.match).get("dl_dst") == mac}
    assert len(own) >= 2
    mods = edit(core, path, edited, sws)
    mem = core.programs.memory["hv1"].vm_ofports
    assert mem[existing] == old_ofport != mem[newcomer]
    assert not mods[tun_dpid]
    # the newcomer's flows are added and the network's broadcast delivery gains it; nothing else
    assert mods[int_dpid] and not [f for c, f in mods[int_dpid] if c == "delete"]
    assert all(sws[int_dpid].flows.get(k) == f for k, f in own.items())
    fresh = compile_host(load_topology_data(edited, "x"), "hv1")
    assert fresh.allocation.vm_ofports[existing] != old_ofport  # what memory prevented


def test_a_new_hosts_colliding_tunnel_does_not_move_the_existing_tunnel(tmp_path: Path) -> None:
    data, edited = tunnel_case()
    path = tmp_path / "t.json"
    core, sws = start(path, data)
    assert core.programs is not None
    name = tunnel_port_name("vxlan", "192.0.2.12")
    ofport = core.programs.memory["hv1"].tunnel_ofports[name]
    int_dpid, tun_dpid = dpids(core, "hv1")
    from_hv2 = {k: f for k, f in sws[tun_dpid].flows.items() if dict(f.match).get("in_port") == ofport}
    assert from_hv2
    mods = edit(core, path, edited, sws)
    assert core.programs.memory["hv1"].tunnel_ofports[name] == ofport
    assert not mods[int_dpid]
    assert all(sws[tun_dpid].flows.get(k) == f for k, f in from_hv2.items())
    assert not [f for c, f in mods[tun_dpid] if c == "delete"]
    fresh = compile_host(load_topology_data(edited, "x"), "hv1")
    assert fresh.allocation.tunnel_ofports[name] != ofport  # what memory prevented


def test_after_a_restart_the_switchs_port_numbers_are_kept_and_vlans_resync_once(tmp_path: Path) -> None:
    data, edited = port_case()
    path = tmp_path / "t.json"
    core, sws = start(path, data)
    edit(core, path, edited, sws)
    assert core.programs is not None
    program = compile_host(core.programs.topo, "hv1", graph=core.programs.graph)
    ports = {b.datapath_id: {p.name: p.ofport for p in b.ports} for b in program.bridges}
    # A new controller process: no memory, but the switches report their ports as OVS kept them.
    restarted = C.Core(str(path), Clock())
    assert restarted.reload("start") == []
    for d, sw in sws.items():
        sw.flow_mods.clear()
        connect(restarted, sw, ports[d])
        assert sw.flow_mods == []
    assert restarted.programs is not None and restarted.programs.memory["hv1"] == core.programs.memory["hv1"]
    # Without the ports it would renumber the existing port (what the port-desc memory avoids).
    blind = C.Core(str(path), Clock())
    blind.reload("start")
    sw = sws[dpids(core, "hv1")[0]]
    connect(blind, sw)
    assert sw.flow_mods

    # Local VLANs are not in port-desc: a network the memory kept off its preferred VLAN is
    # renumbered once after a restart (its flows on that host rewritten), then stays.
    data, edited = vni_case()
    path2 = tmp_path / "v.json"
    core, sws = start(path2, data)
    edit(core, path2, edited, sws)
    restarted = C.Core(str(path2), Clock())
    restarted.reload("start")
    int_dpid = dpids(core, "hv1")[0]
    connect(restarted, sws[int_dpid])
    assert restarted.programs is not None and restarted.programs.memory["hv1"].vlans == {"new": 101, "old": 102}
    sws[int_dpid].flow_mods.clear()
    connect(restarted, sws[int_dpid])
    assert sws[int_dpid].flow_mods == []
