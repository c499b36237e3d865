"""What the live controller did, counted by the core (no Prometheus here: the shell exports it).

Plain numbers a test can read: counters only ever grow, histograms keep cumulative bucket counts
as Prometheus wants them. `ovsflow.metrics` turns a `Stats` (and the core's switches) into
metric families at each scrape; nothing here knows about HTTP, Ryu or prometheus_client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# seconds: from a 1 ms no-op update to a minute-long bulk install of a very large program
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative (cumulative() is)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), ending with +Inf: Prometheus' `le` buckets."""
        out, total = [], 0
        for bound, n in zip(self.buckets, self.counts):
            total += n
            out.append((bound, total))
        out.append((float("inf"), self.count))
        return out


@dataclass
class Stats:
    """Counters and histograms of one controller process (they start at zero with it)."""

    flow_mods: int = 0  # flow-mods sent in bundles (program flows added/modified/deleted, learned entries forgotten)
    group_mods: int = 0
    bundles: int = 0  # bundles committed (one per reconcile that changed something)
    reloads_accepted: int = 0
    reloads_refused: int = 0
    moved_vms: int = 0  # VMs (network, MAC) found on another host at a reload
    audits: int = 0  # audit read-backs finished
    audit_drift: int = 0  # audits that found a switch different from its program
    audit_drift_changes: int = 0  # changes those audits sent to repair it
    connects: int = 0  # switch connections that reached MAIN
    disconnects: int = 0  # switch connections lost
    reconcile_failures: int = 0
    # trigger ("connect", "reload", "audit") -> seconds from the change to the barrier of its bundle
    update_latency: dict[str, Histogram] = field(default_factory=dict)
    # stage ("reload": load + compile of the changed hosts; "switch": one switch's target) -> seconds
    compile_seconds: dict[str, Histogram] = field(default_factory=dict)
    last_sync: dict[int, float] = field(default_factory=dict)  # dpid -> wall time it was last confirmed in sync

    def observe_latency(self, trigger: str, seconds: float) -> None:
        self.update_latency.setdefault(trigger, Histogram()).observe(seconds)

    def observe_compile(self, stage: str, seconds: float) -> None:
        self.compile_seconds.setdefault(stage, Histogram()).observe(seconds)


@dataclass(frozen=True)
class SwitchRow:
    """One switch of the topology, as the per-switch gauges show it."""

    dpid: int
    host: str
    bridge: str
    connected: bool
    flows: int | None  # of its program (None: not compiled yet)
    groups: int | None
    last_sync: float | None  # wall time, None if never confirmed by this process
