"""Issue 17: the live controller's Prometheus endpoint, scraped in a real lab.

A 3-host lab under `ryu-manager ovsflow.app --ovsflow-metrics-port`, the endpoint bound to the
controller's lab address (never the root namespace). Scraped after start, after an edit of the
topology file, after a refused edit, after a switch reconnect (`ovs-appctl bridge/reconnect`),
and with `--ovsflow-log-json` on: every counter and gauge must have moved exactly as what
happened, and the log must be one JSON object per line, with the lost switch a WARNING.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import lab_name
from test_app_lab import NEW_PORT, TOPOLOGY

from ovsflow.compiler import compile_host
from ovsflow.lab.controller import controlled_lab
from ovsflow.metrics import parse
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

NAME = lab_name("am")
CTL_IP = "192.0.2.254"
CTL_PORT = 6653
METRICS_PORT = 9108
# the same lab and edit as test_app_lab: hv1's br-int gets a port, hv2's br-tun (l2pop) its MAC; hv3 never shares blue


def programs(path: Path) -> dict[str, tuple]:
    """label -> (flows, groups) of every bridge, as the compiler renders them."""
    topo = load_topology(path)
    return {f"{h}/{b.name}": (tuple(b.flows), tuple(b.groups)) for h in topo.hosts for b in compile_host(topo, h).bridges}


def per_switch(m: dict, name: str) -> dict[str, float]:
    return {f"{dict(labels)['host']}/{dict(labels)['bridge']}": v for (n, labels), v in m.items() if n == name}


def test_metrics_move_with_start_edit_refusal_and_reconnect(lab_base: Path, tmp_path: Path) -> None:
    topo_file = tmp_path / "topology.yaml"
    topo_file.write_text(TOPOLOGY)
    args = ("--ovsflow-metrics-port", str(METRICS_PORT), "--ovsflow-metrics-address", CTL_IP, "--ovsflow-log-json")
    with controlled_lab(topo_file, NAME, tmp_path / "ryu.log", ctl_ip=CTL_IP, ctl_port=CTL_PORT, args=args) as (lab, app):
        def scrape() -> dict:
            return parse(app.scrape(CTL_IP, METRICS_PORT))

        # --- after start: six switches, each programmed by one bundle on connect -------------
        want = programs(topo_file)
        m0 = scrape()
        assert m0[("ovsflow_switches_connected", ())] == 6
        assert per_switch(m0, "ovsflow_switch_up") == dict.fromkeys(want, 1.0)
        assert per_switch(m0, "ovsflow_switch_program_flows") == {k: len(f) for k, (f, _) in want.items()}
        assert per_switch(m0, "ovsflow_switch_program_groups") == {k: len(g) for k, (_, g) in want.items()}
        assert m0[("ovsflow_switch_connects_total", ())] == 6 and m0[("ovsflow_bundles_total", ())] == 6
        assert m0[("ovsflow_flow_mods_total", ())] == sum(len(f) for f, _ in want.values())
        assert m0[("ovsflow_group_mods_total", ())] == sum(len(g) for _, g in want.values())
        assert m0[("ovsflow_update_latency_seconds_count", (("trigger", "connect"),))] == 6
        assert m0[("ovsflow_reloads_total", (("result", "accepted"),))] == 1
        assert m0[("ovsflow_reloads_total", (("result", "refused"),))] == 0
        synced0 = per_switch(m0, "ovsflow_switch_last_sync_timestamp_seconds")
        assert set(synced0) == set(want) and all(abs(time.time() - t) < 300 for t in synced0.values())

        # --- an edit: exactly the changed bridges get a bundle; the others are untouched ------
        mark = app.mark()
        topo_file.write_text(TOPOLOGY + NEW_PORT)
        new = programs(topo_file)
        changed = sorted(k for k in want if want[k] != new[k])
        assert changed and len(changed) < 6, changed
        app.wait_for(r"file change: updated", count=len(changed), since=mark)
        m1 = scrape()
        assert m1[("ovsflow_reloads_total", (("result", "accepted"),))] == 2
        assert m1[("ovsflow_bundles_total", ())] == 6 + len(changed)
        assert m1[("ovsflow_flow_mods_total", ())] > m0[("ovsflow_flow_mods_total", ())]
        assert m1[("ovsflow_update_latency_seconds_count", (("trigger", "reload"),))] == len(changed)
        assert 0 < m1[("ovsflow_update_latency_seconds_sum", (("trigger", "reload"),))] < 10 * len(changed)
        assert per_switch(m1, "ovsflow_switch_program_flows") == {k: len(f) for k, (f, _) in new.items()}
        synced1 = per_switch(m1, "ovsflow_switch_last_sync_timestamp_seconds")
        assert {k for k in want if synced1[k] > synced0[k]} == set(changed)
        assert m1[("ovsflow_compile_seconds_count", (("stage", "reload"),))] == 2
        assert m1[("ovsflow_moved_vms_total", ())] == 0

        # --- a refused edit: counted, nothing sent -------------------------------------------
        mark = app.mark()
        topo_file.write_text(TOPOLOGY.replace("vni: 101", "vni: 0") + NEW_PORT)
        app.wait_for(r"rejected", since=mark)
        m2 = scrape()
        assert m2[("ovsflow_reloads_total", (("result", "refused"),))] == 1
        assert m2[("ovsflow_reloads_total", (("result", "accepted"),))] == 2
        assert m2[("ovsflow_bundles_total", ())] == m1[("ovsflow_bundles_total", ())]

        # --- a switch reconnects: counted, found in sync, nothing sent -----------------------
        mark = app.mark()
        inst = lab.ovs("hv3")
        inst.appctl("bridge/reconnect", lab.state.hosts["hv3"]["bridge_tun"])
        app.wait_for(r"hv3/br-tun\) connect: in sync", since=mark)
        m3 = scrape()
        assert m3[("ovsflow_switch_connects_total", ())] == 7
        assert m3[("ovsflow_switches_connected", ())] == 6
        assert m3[("ovsflow_bundles_total", ())] == m1[("ovsflow_bundles_total", ())]
        assert m3[("ovsflow_flow_mods_total", ())] == m1[("ovsflow_flow_mods_total", ())]
        synced3 = per_switch(m3, "ovsflow_switch_last_sync_timestamp_seconds")
        assert {k for k in want if synced3[k] > synced1[k]} == {"hv3/br-tun"}

        # --- the log: one JSON object per line; refusal and the lost switch are warnings or worse
        lines = app.text().splitlines()
        first = next(i for i, ln in enumerate(lines) if ln.startswith("{"))  # Ryu's own start-up lines come first
        events = [json.loads(line) for line in lines[first:] if line.strip()]
        assert all({"time", "level", "logger", "message"} <= set(e) for e in events), events[:3]
        refused = [e for e in events if "rejected" in e["message"]]
        assert refused and all(e["level"] in ("WARNING", "ERROR", "CRITICAL") for e in refused)
        lost = [e for e in events if "disconnected" in e["message"]]
        assert lost and all(e["level"] == "WARNING" and e.get("dpid") for e in lost), lost
        assert any(e.get("switch") == "hv3/br-tun" and e.get("event") == "reconciled" and e.get("changes") == 0 for e in events)
