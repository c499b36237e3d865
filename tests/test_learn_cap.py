"""The learned table's cap (README, Tenant security): learned entries live alone in br-tun's
learned table, which render and ovsdb-ensure cap with an OVS Flow_Table (flow_limit = cap + the
table's one permanent flow, overflow_policy=evict, grouped by VLAN); program flows sit in other
tables and are never evicted. The lab test (tests/test_lab_learn_cap.py) floods it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ovsflow import ovsdb
from ovsflow.compiler import LEARN_TABLE, compile_host
from ovsflow.model import TopologyError, load_topology, load_topology_data
from ovsflow.program import COOKIE_LEARNED
from ovsflow.render import render_script

SEED = Path(__file__).resolve().parent.parent / "labs" / "03-seed003" / "topology.yaml"


def seed(max_entries: int | None = None):
    data = yaml.safe_load(SEED.read_text())
    if max_entries is not None:
        data.setdefault("learn", {})["max_entries"] = max_entries
    return load_topology_data(data, "seed003")


def test_default_cap_and_only_learned_state_in_the_learned_table() -> None:
    topo = load_topology(SEED)
    assert topo.max_learned == 65536
    for host in topo.hosts:
        tun = compile_host(topo, host).bridge("tun")
        assert tun.learn_limit == (LEARN_TABLE, 65536)
        in_learned = [f for f in tun.flows if f.table == LEARN_TABLE]
        assert [f.priority for f in in_learned] == [0], in_learned  # the miss only: nothing of the program's to evict
        learns = [a for f in tun.flows for a in f.actions if type(a).__name__ == "Learn"]
        assert learns and all(a.table == LEARN_TABLE and a.cookie == COOKIE_LEARNED and a.hard_timeout for a in learns)


def test_max_entries_is_validated() -> None:
    assert seed(100).max_learned == 100
    for bad in (0, -1, 1.5, "many"):
        with pytest.raises(TopologyError):
            seed(bad)  # type: ignore[arg-type]


def flow_table(ovs, bridge: str = "br-tun") -> dict[str, object]:
    uuid = ovs.vsctl("get", "Bridge", bridge, f"flow_tables:{LEARN_TABLE}").strip()
    row = json.loads(ovs.vsctl("--format=json", "--columns=flow_limit,overflow_policy,groups", "list", "Flow_Table", uuid))["data"][0]
    return {"flow_limit": row[0], "overflow_policy": row[1], "groups": row[2]}


@pytest.mark.ovs
def test_render_script_sets_the_cap(ovs) -> None:
    topo = seed(500)
    script = render_script(topo, "hv2", "netdev")
    proc = subprocess.run(["sh", "-s"], input=script, text=True, capture_output=True, env={**os.environ, **ovs.env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert flow_table(ovs) == {"flow_limit": 501, "overflow_policy": "evict", "groups": "NXM_OF_VLAN_TCI[0..11]"}


@pytest.mark.ovs
def test_ovsdb_ensure_sets_and_follows_the_cap(ovs) -> None:
    remote = f"unix:{ovs.db_sock}"
    first = ovsdb.ensure_host(remote, compile_host(seed(500), "hv2"), datapath_type="netdev")
    assert flow_table(ovs) == {"flow_limit": 501, "overflow_policy": "evict", "groups": "NXM_OF_VLAN_TCI[0..11]"}
    assert first
    again = ovsdb.ensure_host(remote, compile_host(seed(500), "hv2"), datapath_type="netdev")
    assert not [ln for ln in again.lines if "capped" in ln], again.lines
    changed = ovsdb.ensure_host(remote, compile_host(seed(64), "hv2"), datapath_type="netdev")
    assert any("capped at 64 learned entries" in ln for ln in changed.lines), changed.lines
    assert flow_table(ovs)["flow_limit"] == 65
