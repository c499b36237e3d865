"""The compiler: deterministic, stable allocations, pipeline contracts enforced, flood lists exact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovsflow import flow as F
from ovsflow.compiler import compile_all, compile_host
from ovsflow.graph import TopologyGraph, allocate
from ovsflow.model import load_topology, load_topology_data
from ovsflow.pipeline import PipelineError, load_pipeline
from ovsflow.program import COOKIE_BASE, COOKIE_MASK

DATA = Path(__file__).parent / "data"


def seed(variant: str = "vxlan"):
    return load_topology(DATA / f"seed003-{variant}.yaml")


def test_render_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Same topology -> same bytes, even with a different hash seed (no set/dict-order leaks)."""
    outs = []
    for hashseed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        proc = subprocess.run(
            [sys.executable, "-m", "ovsflow.cli", "render", str(DATA / "seed003-mixed.yaml"), "--all-hosts",
             "--output-dir", str(tmp_path / hashseed)],
            env=env, capture_output=True, text=True,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / hashseed).iterdir())})
    assert sorted(outs[0]) == ["hv1.sh", "hv2.sh", "hv3.sh"]
    assert outs[0] == outs[1] == outs[2]


def test_every_flow_carries_the_ovsflow_cookie_and_passes_its_table() -> None:
    for program in compile_all(seed("mixed")).values():
        for bridge in program.bridges:
            pipeline = load_pipeline(bridge.role)
            for f in bridge.flows:
                assert f.cookie & COOKIE_MASK == COOKIE_BASE, f
                pipeline.check(f)
            # every declared table has its miss flow, as declared
            misses = {f.table: f for f in bridge.flows if f.priority == 0 and not f.match}
            assert set(misses) == set(pipeline.tables)
            for table in pipeline.tables.values():
                want = (F.GotoTable(table.miss_goto),) if table.miss_goto is not None else ()
                assert misses[table.id].actions == want


def test_learned_flows_get_the_learned_cookie_and_timeout() -> None:
    topo = seed()
    tun = compile_host(topo, "hv1").bridge("tun")
    learns = [a for f in tun.flows for a in f.actions if isinstance(a, F.Learn)]
    assert len(learns) == 1
    assert learns[0].cookie == COOKIE_BASE | 1 and learns[0].hard_timeout == 300 and learns[0].table == 20


def test_per_network_learn_timeout_gets_its_own_flow() -> None:
    data = _seed_data()
    data["networks"]["red"]["hard_timeout"] = 30
    tun = compile_host(load_topology_data(data), "hv1").bridge("tun")
    vlans = compile_host(load_topology_data(data), "hv1").local_vlans
    learn_flows = [f for f in tun.flows if f.table == 10 and f.priority > 0]
    assert {(f.match_dict.get("dl_vlan"), f.actions[0].hard_timeout) for f in learn_flows} == {
        (None, 300), (vlans["red"], 30)
    }


def _seed_data() -> dict:
    import yaml

    return yaml.safe_load((DATA / "seed003-mixed.yaml").read_text())


def test_flood_goes_to_exactly_the_vteps_hosting_the_network() -> None:
    data = _seed_data()
    # a third tenant present on hv1 and hv3 only, and a local-only one on hv2
    data["networks"]["green"] = {"vni": 5000, "tunnel": "geneve"}
    data["networks"]["solo"] = {"vni": 7}
    data["ports"]["g1"] = {"host": "hv1", "network": "green", "mac": "02:00:00:00:0a:01"}
    data["ports"]["g3"] = {"host": "hv3", "network": "green", "mac": "02:00:00:00:0a:03"}
    data["ports"]["s2"] = {"host": "hv2", "network": "solo", "mac": "02:00:00:00:0b:02"}
    topo = load_topology_data(data)
    graph = TopologyGraph(topo)
    for host in topo.hosts:
        program = compile_host(topo, host, graph=graph)
        tun = program.bridge("tun")
        by_ofport = {p.ofport: p for p in tun.ports}
        floods = {f.match_dict["dl_vlan"]: f for f in tun.flows if f.table == 22 and f.priority == 1}
        for net in graph.networks_on(host):
            vlan = program.local_vlans[net.name]
            remotes = set(graph.remote_hosts(host, net.name))
            if not remotes:
                assert vlan not in floods, f"{host}/{net.name} floods with nobody to flood to"
                continue
            f = floods.pop(vlan)
            assert f.actions == (F.PopVlan(), F.Group(net.vni))
            group = {g.group_id: g for g in tun.groups}[net.vni]
            assert all(b.actions[0] == F.SetField("tun_id", net.vni) for b in group.buckets)
            outs = [by_ofport[b.actions[1].port] for b in group.buckets]
            assert {p.type for p in outs} == {net.tunnel}
            assert {dict(p.options)["remote_ip"] for p in outs} == {topo.hosts[h].vtep for h in remotes}
        assert not floods, f"flood flows for VLANs not on {host}: {floods}"
        assert len(tun.groups) == sum(1 for n in graph.networks_on(host) if graph.remote_hosts(host, n.name))
    # tunnels: only to peers that share a network, one per (peer, type)
    tun1 = {p.name for p in compile_host(topo, "hv2", graph=graph).bridge("tun").ports if p.type != "patch"}
    assert tun1 == {"vxlan-c000020b", "vxlan-c000020d", "gre-c000020b", "gre-c000020d"}
    tun3 = {p.name for p in compile_host(topo, "hv3", graph=graph).bridge("tun").ports if p.type == "geneve"}
    assert tun3 == {"geneve-c000020b"}


def test_unknown_tunnel_keys_have_no_flow() -> None:
    program = compile_host(seed("gre"), "hv1")
    tun = program.bridge("tun")
    keys = {f.match_dict["tun_id"]: f for f in tun.flows if f.table in (3, 4, 6) and f.priority > 0}
    assert set(keys) == {101, 102}
    assert all(f.table == 3 for f in keys.values())  # GRE networks only in the GRE table


def test_local_vlans_follow_vni_and_do_not_renumber() -> None:
    data = _seed_data()
    before = compile_host(load_topology_data(data), "hv1").local_vlans
    assert before == {"blue": 101, "red": 102}
    data["networks"]["aaa"] = {"vni": 4094 + 101}  # prefers VLAN 101 too: a collision
    data["ports"]["a1"] = {"host": "hv1", "network": "aaa", "mac": "02:00:00:00:0c:01"}
    after = compile_host(load_topology_data(data), "hv1").local_vlans
    # "aaa" sorts first by name, but networks are allocated in VNI order: the newcomer moves.
    assert after == {"blue": 101, "red": 102, "aaa": 103}


@given(st.sets(st.integers(1, 2**24 - 1), min_size=1, max_size=40), st.integers(1, 2**24 - 1))
@settings(max_examples=200, deadline=None)
def test_allocation_adding_a_key_moves_at_most_its_collision_chain(vnis: set[int], new: int) -> None:
    space = range(1, 4095)
    if new in vnis:
        return
    before = allocate(((f"n{v}", v) for v in sorted(vnis)), space)
    after = allocate(((f"n{v}", v) for v in sorted(vnis | {new})), space)
    assert len(set(after.values())) == len(after)
    moved = {k for k in before if before[k] != after[k]}
    # Networks older (lower VNI) than the newcomer never move; a younger one moves only if it sat
    # off its preferred slot (a collision chain) or the newcomer took its preferred slot.
    for k in moved:
        v = int(k[1:])
        assert v > new, (k, before[k], after[k])


def test_pipeline_refuses_bad_flows() -> None:
    tun = load_pipeline("tun")
    with pytest.raises(PipelineError, match="pop_vlan without a matched or pushed VLAN"):
        tun.check(F.Flow.make(22, 1, {}, [F.PopVlan(), F.Output(2)]))
    with pytest.raises(PipelineError, match="does not allow match on \\['dl_src'\\]"):
        tun.check(F.Flow.make(0, 1, {"dl_src": 1}, [F.GotoTable(2)]))
    with pytest.raises(PipelineError, match="may not go to table 22"):
        tun.check(F.Flow.make(0, 1, {"in_port": 1}, [F.GotoTable(22)]))
    with pytest.raises(PipelineError, match="undeclared table 7"):
        tun.check(F.Flow.make(7, 1, {}, []))
    with pytest.raises(PipelineError, match="does not allow action learn"):
        tun.check(F.Flow.make(22, 1, {"dl_vlan": 5}, [F.Learn(20, 1, 0, ())]))
    with pytest.raises(PipelineError, match="goto_table must be the last"):
        tun.check(F.Flow.make(3, 1, {"tun_id": 5}, [F.GotoTable(10), F.PushVlan()]))
    with pytest.raises(PipelineError, match="set_field vlan_vid without a VLAN"):
        tun.check(F.Flow.make(3, 1, {"tun_id": 5}, [F.SetField("vlan_vid", 0x1005), F.GotoTable(10)]))
    tun.check(F.Flow.make(3, 1, {"tun_id": 5}, [F.PushVlan(), F.SetField("vlan_vid", 0x1005), F.GotoTable(10)]))


def test_br_int_isolates_networks_with_overlapping_macs() -> None:
    """Both tenants have a VM with MAC ...:01 on hv1: every br-int flow that names a MAC also names a VLAN."""
    program = compile_host(seed(), "hv1")
    br_int = program.bridge("int")
    for f in br_int.flows:
        m = f.match_dict
        if "dl_dst" in m and f.table != 0:
            assert "dl_vlan" in m, f
        if f.table == 0 and "dl_src" in m:
            assert "in_port" in m and m["vlan_tci"] == (0, 0x1FFF), f
    outputs = {}
    for f in br_int.flows:
        if f.table == 20 and f.priority == 2:
            outputs.setdefault(f.match_dict["dl_dst"], set()).add((f.match_dict["dl_vlan"], f.actions[-1].port))
    assert len(outputs[0x020000000001]) == 2  # same MAC, two VLANs, two different ports
    assert len({p for _, p in outputs[0x020000000001]}) == 2


def test_render_flows_format_and_bad_host(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ovsflow.cli import main

    r = CliRunner().invoke(main, ["render", str(DATA / "seed003-vxlan.yaml"), "--host", "hv1", "--dry-run", "--format", "flows", "--bridge", "tun"])  # noqa: E501
    assert r.exit_code == 0, r.output
    flows = [ln for ln in r.output.splitlines() if ln and not ln.startswith("#")]
    assert len(flows) == len(compile_host(seed(), "hv1").bridge("tun").flows)
    r = CliRunner().invoke(main, ["render", str(DATA / "seed003-vxlan.yaml"), "--host", "hv9", "--dry-run"])
    assert r.exit_code == 2 and "hosts.hv9: no such host (known: hv1, hv2, hv3)" in r.output
    r = CliRunner().invoke(main, ["render", str(DATA / "seed003-vxlan.yaml"), "--all-hosts", "--dry-run"])
    assert r.exit_code == 2 and "--output-dir" in r.output


def test_l2pop_prepopulates_unicast_and_answers_arp_for_remote_ips_only() -> None:
    topo = load_topology(DATA / "seed003-l2pop.yaml")
    program = compile_host(topo, "hv1")
    tun = program.bridge("tun")
    blue, red = program.local_vlans["blue"], program.local_vlans["red"]
    table = load_pipeline("tun")["unicast"].id  # l2pop entries: not in the learned table (20)
    unicast = {(f.match_dict["dl_vlan"], f.match_dict["dl_dst"]): f for f in tun.flows if f.table == table and f.priority == 2}
    # blue is l2pop: both remote VMs pre-installed, above learned flows; red (learn) has none
    assert set(unicast) == {(blue, 0x020000000002), (blue, 0x020000000003)}
    ports = {p.name: p for p in tun.ports}
    f = unicast[(blue, 0x020000000002)]
    assert f.actions[:2] == (F.PopVlan(), F.SetField("tun_id", 101))
    assert dict(ports[next(p.name for p in tun.ports if p.ofport == f.actions[2].port)].options)["remote_ip"] == "192.0.2.12"
    arp = {f.match_dict["arp_tpa"]: f for f in tun.flows if f.table == 21 and "arp_tpa" in f.match_dict}
    assert set(arp) == {0xC6336401, 0xC6336402, 0xC6336403}  # 198.51.100.1-3
    assert arp[0xC6336401].actions == ()  # the local VM answers for itself
    reply = arp[0xC6336402].actions
    assert F.SetField("arp_op", 2) in reply and F.SetField("arp_spa", 0xC6336402) in reply
    assert F.SetField("eth_src", 0x020000000002) in reply and reply[-1] == F.Output(F.IN_PORT)
    assert all(f.match_dict["dl_vlan"] == blue for f in arp.values())
    to_responder = [f for f in tun.flows if f.table == 2 and any(a == F.GotoTable(21) for a in f.actions)]
    assert sorted(f.match_dict["dl_type"] for f in to_responder) == [0x0806, 0x86DD]
    assert all(f.match_dict["dl_vlan"] == blue for f in to_responder)
    assert red not in {f.match_dict.get("dl_vlan") for f in tun.flows if f.table in (20, 21, 23)}


def test_l2pop_nd_responder_turns_solicitations_into_advertisements() -> None:
    program = compile_host(load_topology(DATA / "seed003-l2pop.yaml"), "hv1")
    tun = program.bridge("tun")
    blue = program.local_vlans["blue"]
    ns = {f.match_dict["nd_target"]: f for f in tun.flows if f.table == 21 and "nd_target" in f.match_dict}
    target2 = 0x20010DB8000000000000000000000002
    assert set(ns) == {target2 - 1, target2, target2 + 1}
    assert ns[target2 - 1].actions == ()  # blue1 is local: it answers for itself
    assert ns[target2].actions == (F.SetField("icmpv6_type", 136), F.SetField("icmpv6_code", 0),
                                   F.SetField("nd_reserved", 0x60000000), F.SetField("nd_options_type", 2),
                                   F.GotoTable(23))
    [na] = [f for f in tun.flows if f.table == 23 and f.match_dict.get("nd_target") == target2]
    assert na.match_dict["icmpv6_type"] == 136 and na.match_dict["dl_vlan"] == blue
    assert F.SetField("nd_tll", 0x020000000002) in na.actions and F.SetField("ipv6_src", target2) in na.actions
    assert na.actions[-1] == F.Output(F.IN_PORT)
    dad = [f for f in tun.flows if f.table == 21 and f.match_dict.get("ipv6_src") == 0]
    assert len(dad) == 1 and dad[0].actions == (F.GotoTable(22),) and dad[0].priority == 2


def test_vtep_joining_a_network_changes_one_group_and_no_flow() -> None:
    data = _seed_data()
    before = {h: compile_host(load_topology_data(data), h) for h in ("hv1", "hv2")}
    data["hosts"]["hv4"] = {"vtep": "192.0.2.14"}
    data["hosts"]["hv1"]["vtep"] = "192.0.2.11"
    data["ports"]["blue4"] = {"host": "hv4", "network": "blue", "mac": "02:00:00:00:00:04"}
    after = {h: compile_host(load_topology_data(data), h) for h in ("hv1", "hv2")}
    for h in before:
        b, a = before[h].bridge("tun"), after[h].bridge("tun")
        changed_groups = set(b.groups) ^ set(a.groups)
        assert {g.group_id for g in changed_groups} == {101}
        # the flows that change are only the new tunnel port's classify entry
        added = set(a.flows) - set(b.flows)
        assert set(b.flows) - set(a.flows) == set()
        assert len(added) == 1 and next(iter(added)).table == 0


def test_pipeline_command_prints_every_declared_table() -> None:
    from click.testing import CliRunner

    from ovsflow.cli import main

    r = CliRunner().invoke(main, ["pipeline"])
    assert r.exit_code == 0, r.output
    for role in ("int", "tun"):
        for t in load_pipeline(role).tables.values():
            assert f" {t.id:>3} {t.name} " in r.output.replace("  ", " ") or f"{t.id:>3} {t.name}" in r.output
