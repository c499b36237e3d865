"""`ovsflow verify`: every shipped topology verifies, a leaking program is reported with a concrete
counterexample the evaluator replays, and the command's exit codes (0 / 1 / 2)."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ovsflow.compiler import compile_all
from ovsflow.fields import mac
from ovsflow.flow import Flow, Group
from ovsflow.model import load_topology
from ovsflow.program import HostProgram
from ovsflow.verify import frame_of, verify
from ovsflow.verify.mutants import extra_bucket, swapped_key

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted(ROOT.glob("labs/*/topology.yaml")) + sorted((ROOT / "tests" / "data").glob("*.yaml"))


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_topology_verifies(path: Path) -> None:
    res = verify(load_topology(path))
    assert res.ok, "\n".join(f"{v.kind} {v.host}: {v.message}" for v in res.violations)
    assert res.hosts == len(load_topology(path).hosts) and res.flows > 0 and res.classes > 0


def leaking(programs: list[HostProgram], host: str, group: int) -> list[HostProgram]:
    """The host's first flood flow sends into flood group `group` (another network's) instead."""
    out = []
    for p in programs:
        if p.host == host:
            flows = list(p.bridge("tun").flows)
            i = next(i for i, f in enumerate(flows) if any(isinstance(a, Group) for a in f.actions))
            flows[i] = replace(flows[i], actions=tuple(Group(group) if isinstance(a, Group) else a for a in flows[i].actions))
            p = replace(p, bridges=tuple(replace(b, flows=tuple(sorted(flows, key=Flow.sort_key))) if b.role == "tun" else b
                                         for b in p.bridges))
        out.append(p)
    return out


def test_leaking_flood_flow_is_reported_with_a_counterexample() -> None:
    topo = load_topology(ROOT / "labs" / "03-seed003" / "topology.yaml")
    programs = list(compile_all(topo).values())
    tun = next(p for p in programs if p.host == "hv1").bridge("tun")
    flood = next(f for f in tun.flows if any(isinstance(a, Group) for a in f.actions))
    own = next(a.group_id for a in flood.actions if isinstance(a, Group))
    other = next(g.group_id for g in tun.groups if g.group_id != own)
    res = verify(topo, leaking(programs, "hv1", other))
    iso = [v for v in res.violations if v.kind == "isolation"]
    assert iso, res.violations
    v = iso[0]
    assert v.frame is not None and v.entry is not None and "sent on" in v.message, v
    sender = next(p for p in topo.ports.values() if p.host == "hv1" and topo.networks[p.network].vni == own)
    assert frame_of(v.frame).eth_src == mac(sender.mac)  # the frame a port of the leaking network sends
    # replayed concretely in the evaluator, it leaves hv1 with the other network's key
    trace = res.traces[res.violations.index(v)]
    assert f"key={other:#x}" in trace, trace


@pytest.mark.parametrize("mutate", [extra_bucket, swapped_key])
def test_named_faults_are_reported(mutate) -> None:
    topo = load_topology(ROOT / "tests" / "data" / "routed.yaml")
    programs = list(compile_all(topo).values())
    mutant = mutate(random.Random(3), programs)
    assert mutant is not None
    desc, progs = mutant
    res = verify(topo, progs, replay=False)
    assert not res.ok, desc


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", "verify", *args], capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(tmp_path: Path) -> None:
    ok = run_cli(str(ROOT / "labs" / "03-seed003" / "topology.yaml"))
    assert ok.returncode == 0 and "verified: 3 hosts" in ok.stdout and "header classes" in ok.stdout, ok
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: {hv1: {vtep: 192.0.2.1}}\nnetworks: {blue: {vni: 0}}\nports: {}\n")
    res = run_cli(str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{bad}: networks.blue.vni: must be >= 1 (0)" in res.stderr.splitlines(), res.stderr
    res = run_cli(str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_verify_benchmark_quick(tmp_path: Path) -> None:
    """The benchmark runs (tiny size); its figures' shape, never a time."""
    proc = subprocess.run([sys.executable, "-m", "bench", "verify", "--quick", "--results-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    [result] = list(tmp_path.glob("*-quick.json"))
    import json
    [row] = json.loads(result.read_text())["rows"]
    assert row["benchmark"] == "verify" and row["figures"]["violations"] == 0
    assert row["raw"]["hosts"] == row["raw"]["all_hosts"] == 5 and row["figures"]["header classes per host"] > 0


def test_parallel_hosts_give_the_serial_result() -> None:
    """`workers=2` (forked processes, hosts in order) reports exactly what one process does."""
    from bench.synth import synthetic
    from ovsflow.model import load_topology_data

    for topo in (load_topology_data(synthetic(5, 10, 60), "synth"), load_topology(ROOT / "tests" / "data" / "routed.yaml")):
        one, two = verify(topo, replay=False), verify(topo, replay=False, workers=2)
        assert (one.hosts, one.flows, one.classes, one.exits) == (two.hosts, two.flows, two.classes, two.exits)
        assert one.violations == two.violations and len(two.per_host) == two.hosts == len(topo.hosts)
