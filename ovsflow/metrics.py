"""Prometheus metrics of the live controller (`--ovsflow-metrics-port N`): the shell's half.

The core counts (`ovsflow.controller.stats`); this turns its numbers into metric families at each
scrape (a custom collector: nothing is copied between scrapes, so there is nothing to keep in
step) and serves them over HTTP. Names follow Prometheus conventions: counters end in `_total`,
durations are in seconds, times are Unix seconds.

    ovsflow_switches_connected                         gauge
    ovsflow_switch_up{dpid,host,bridge}                gauge 1/0, every switch of the topology
    ovsflow_switch_program_flows{dpid,host,bridge}     gauge, flows of its program (once compiled)
    ovsflow_switch_program_groups{dpid,host,bridge}    gauge
    ovsflow_switch_last_sync_timestamp_seconds{...}    gauge, when it was last confirmed in sync
    ovsflow_flow_mods_total / ovsflow_group_mods_total / ovsflow_bundles_total     counters
    ovsflow_update_latency_seconds{trigger}            histogram: change (connect, reload, audit) -> barrier
    ovsflow_reloads_total{result="accepted"|"refused"} counter
    ovsflow_compile_seconds{stage="reload"|"switch"}   histogram
    ovsflow_moved_vms_total, ovsflow_audits_total, ovsflow_audit_drift_total,
    ovsflow_audit_drift_changes_total, ovsflow_switch_connects_total,
    ovsflow_switch_disconnects_total, ovsflow_reconcile_failures_total                counters
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .controller.core import Core
from .controller.stats import Histogram

SWITCH_LABELS = ["dpid", "host", "bridge"]


def _histogram(family: Any, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, [(_le(b), n) for b, n in h.cumulative()], h.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class CoreCollector:
    """A prometheus_client collector reading a Core at scrape time."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def describe(self) -> list[Any]:
        return []  # no up-front description: families are built at each scrape

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        core, st = self.core, self.core.stats
        yield GaugeMetricFamily("ovsflow_switches_connected", "Switches connected to this controller (OpenFlow MAIN state).",
                                value=len(core.switches))
        up = GaugeMetricFamily("ovsflow_switch_up", "1 if the switch is connected, per switch of the topology.",
                               labels=SWITCH_LABELS)
        flows = GaugeMetricFamily("ovsflow_switch_program_flows", "Flows of the switch's program.", labels=SWITCH_LABELS)
        groups = GaugeMetricFamily("ovsflow_switch_program_groups", "Groups of the switch's program.", labels=SWITCH_LABELS)
        synced = GaugeMetricFamily("ovsflow_switch_last_sync_timestamp_seconds",
                                   "When the switch was last confirmed to hold its program (Unix time).", labels=SWITCH_LABELS)
        for row in core.switch_rows():
            labels = [f"{row.dpid:016x}", row.host, row.bridge]
            up.add_metric(labels, 1.0 if row.connected else 0.0)
            if row.flows is not None:
                flows.add_metric(labels, row.flows)
            if row.groups is not None:
                groups.add_metric(labels, row.groups)
            if row.last_sync is not None:
                synced.add_metric(labels, row.last_sync)
        yield from (up, flows, groups, synced)
        for name, doc, value in [
            ("ovsflow_flow_mods", "Flow-mods sent in bundles (program changes and forgotten learned entries).", st.flow_mods),
            ("ovsflow_group_mods", "Group-mods sent in bundles.", st.group_mods),
            ("ovsflow_bundles", "Bundles committed (one per reconcile that changed a switch).", st.bundles),
            ("ovsflow_moved_vms", "VMs found on another host at a reload (forgotten and hinted).", st.moved_vms),
            ("ovsflow_audits", "Audit read-backs finished.", st.audits),
            ("ovsflow_audit_drift", "Audits that found a switch different from its program.", st.audit_drift),
            ("ovsflow_audit_drift_changes", "Changes sent to repair drift found by audits.", st.audit_drift_changes),
            ("ovsflow_switch_connects", "Switch connections that reached MAIN state.", st.connects),
            ("ovsflow_switch_disconnects", "Switch connections lost.", st.disconnects),
            ("ovsflow_reconcile_failures", "Reconciles that failed (the switch is read back next time).", st.reconcile_failures),
        ]:
            yield CounterMetricFamily(name, doc, value=value)
        reloads = CounterMetricFamily("ovsflow_reloads", "Topology loads, by result.", labels=["result"])
        reloads.add_metric(["accepted"], st.reloads_accepted)
        reloads.add_metric(["refused"], st.reloads_refused)
        yield reloads
        latency = HistogramMetricFamily("ovsflow_update_latency_seconds",
                                        "From a change (switch connect, topology reload, audit start) to the barrier "
                                        "after the bundle that applied it.", labels=["trigger"])
        for trigger, h in sorted(st.update_latency.items()):
            _histogram(latency, [trigger], h)
        yield latency
        compile_ = HistogramMetricFamily("ovsflow_compile_seconds", "Compile time: a whole reload, or one switch's program.",
                                         labels=["stage"])
        for stage, h in sorted(st.compile_seconds.items()):
            _histogram(compile_, [stage], h)
        yield compile_


def registry(core: Core) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(CoreCollector(core))
    return reg


def exposition(core: Core) -> str:
    """The text a scrape returns (for tests and `curl`-less debugging)."""
    from prometheus_client import generate_latest

    return str(generate_latest(registry(core)).decode())


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape as {(sample name, sorted labels): value} (tests compare scrapes with it)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out
