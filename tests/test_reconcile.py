"""The pure diff: desired program vs a switch's flows -> the smallest set of changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovsflow import flow as F
from ovsflow import reconcile as RC
from ovsflow.compiler import compile_all
from ovsflow.flow import Flow, GroupEntry
from ovsflow.model import load_topology
from ovsflow.openflow import encode as R
from ovsflow.program import COOKIE_LEARNED, COOKIE_STATIC

DATA = Path(__file__).parent / "data"


def program(host: str = "hv1", role: str = "tun") -> list[Flow]:
    progs = compile_all(load_topology(DATA / "seed003-vxlan.yaml"))
    return [R.canonical_flow(f) for f in progs[host].bridge(role).flows]


def test_in_sync_is_empty() -> None:
    flows = program()
    p = RC.plan(flows, list(reversed(flows)))
    assert p.empty and p.n_flow_mods == 0 and p.unchanged == len(flows)


def test_fresh_switch_gets_everything() -> None:
    flows = program()
    p = RC.plan(flows, [])
    assert sorted(p.flow_adds, key=Flow.sort_key) == sorted(flows, key=Flow.sort_key)
    assert not (p.flow_deletes or p.flow_modifies or p.flow_replaces)


def test_stale_deleted_learned_and_foreign_kept() -> None:
    flows = program()
    stale = Flow.make(22, 1, {"dl_vlan": 999}, [F.PopVlan(), F.Output(5)], cookie=COOKIE_STATIC)
    learned = Flow.make(20, 1, {"dl_vlan": 1, "dl_dst": 0x020000000001}, [F.Output(3)], cookie=COOKIE_LEARNED,
                        hard_timeout=300)
    foreign = Flow.make(0, 50, {"in_port": 7}, [F.Output(8)], cookie=0x1234)
    p = RC.plan(flows, [*flows, stale, learned, foreign])
    assert p.flow_deletes == (stale,)
    assert p.kept_learned == 1
    assert not (p.flow_adds or p.flow_modifies or p.flow_replaces)


def test_changed_actions_modify_changed_timeouts_replace() -> None:
    flows = program()
    target = next(f for f in flows if f.table == 22 and f.priority == 1)
    on_switch_actions = Flow(target.table, target.priority, target.match, (F.PopVlan(),), target.cookie)
    other = next(f for f in flows if f.table == 0 and f.priority == 1)
    on_switch_timeout = Flow(other.table, other.priority, other.match, other.actions, other.cookie, 60, 0)
    actual = [f for f in flows if f not in (target, other)] + [on_switch_actions, on_switch_timeout]
    p = RC.plan(flows, actual)
    assert p.flow_modifies == (target,)
    assert p.flow_replaces == (other,)
    assert not (p.flow_adds or p.flow_deletes)


def test_duplicate_identity_in_program_is_refused() -> None:
    a = Flow.make(0, 1, {"in_port": 1}, [F.Output(2)], cookie=COOKIE_STATIC)
    b = Flow.make(0, 1, {"in_port": 1}, [F.Output(3)], cookie=COOKIE_STATIC)
    with pytest.raises(ValueError):
        RC.plan([a, b], [])


def test_groups_added_modified_and_only_owned_deleted() -> None:
    g1 = GroupEntry(1, "all", (F.Bucket((F.Output(3),)),))
    g2 = GroupEntry(2, "all", (F.Bucket((F.Output(4),)),))
    g2_old = GroupEntry(2, "all", (F.Bucket((F.Output(5),)),))
    g9 = GroupEntry(9, "all", ())
    p = RC.plan([], [], [g1, g2], [g2_old, g9])
    assert p.group_adds == (g1,) and p.group_modifies == (g2,)
    assert p.group_deletes == (g9,)  # on an ovsflow bridge every group is ovsflow's (as in render)
    p = RC.plan([], [], [g1, g2], [g2_old, g9], owns_group=lambda gid: gid < 9)
    assert p.group_deletes == ()


def test_bundle_order() -> None:
    g = GroupEntry(1, "all", ())
    new = Flow.make(22, 1, {"dl_vlan": 5}, [F.Group(1)], cookie=COOKIE_STATIC)
    stale = Flow.make(22, 1, {"dl_vlan": 6}, [F.Group(2)], cookie=COOKIE_STATIC)
    old_group = GroupEntry(2, "all", ())
    p = RC.plan([new], [stale], [g], [old_group], owns_group=lambda gid: True)
    kinds = [(k, c) for k, c, _ in RC.ordered_changes(p)]
    assert kinds == [("group", "add"), ("flow", "delete"), ("flow", "add"), ("group", "delete")]


def test_moved_macs_are_per_network_and_survive_a_rename() -> None:
    from ovsflow.model import load_topology_data

    base = {
        "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}},
        "networks": {"blue": {"vni": 101}, "red": {"vni": 102}},
        "ports": {"b1": {"host": "hv1", "network": "blue", "mac": "02:00:00:00:00:01"},
                  "r1": {"host": "hv1", "network": "red", "mac": "02:00:00:00:00:01"},
                  "r2": {"host": "hv2", "network": "red", "mac": "02:00:00:00:00:02"}},
    }
    old = load_topology_data(base, "old")
    assert RC.moved_macs(old, old) == {}
    moved = {**base, "ports": {"b1": base["ports"]["b1"],
                               "r1-renamed": {**base["ports"]["r1"], "host": "hv2"},  # renamed on the way
                               "r2": base["ports"]["r2"]}}
    assert RC.moved_macs(old, load_topology_data(moved, "new")) == {"red": {0x020000000001: "hv2"}}
    gone = {**base, "ports": {"b1": base["ports"]["b1"], "r1": base["ports"]["r1"]}}  # removed, not moved
    assert RC.moved_macs(old, load_topology_data(gone, "new")) == {}
