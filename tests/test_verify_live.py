"""`ovsflow verify --live` on real OVS: a freshly loaded program shows no drift for every shipped
topology; a deleted, an added and a changed flow and a changed group bucket are each reported
(exit 1); learned entries and other tools' flows are never compared; bad input is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_properties import load_into_ovs

from ovsflow.compiler import compile_host
from ovsflow.flow import Output
from ovsflow.model import load_topology
from ovsflow.program import COOKIE_LEARNED, COOKIE_STATIC
from ovsflow.verify.live import compare_hosts

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted(ROOT.glob("labs/*/topology.yaml")) + sorted((ROOT / "tests" / "data").glob("*.yaml"))
SEED003 = ROOT / "labs" / "03-seed003" / "topology.yaml"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", "verify", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.ovs
@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_freshly_loaded_program_has_no_drift(ovs, tmp_path: Path, path: Path) -> None:
    """Every host of every shipped topology, loaded in turn into one private OVS: OVS's spellings
    (dl_vlan, actions=drop, bucket ids, learn()) never count as drift."""
    topo = load_topology(path)
    for host in sorted(topo.hosts):
        program = compile_host(topo, host, "netdev")
        load_into_ovs(ovs, program, tmp_path)
        drifts = compare_hosts(topo, {host: ovs.ofctl})
        assert [d.bridge for d in drifts] == [b.name for b in program.bridges]
        for d in drifts:
            assert not d.drift, "\n".join(d.lines())
            want = next(b for b in program.bridges if b.name == d.bridge)
            assert d.flows == len(want.flows) > 0 and d.groups == len(want.groups)


@pytest.mark.ovs
def test_drift_is_reported_and_learned_and_foreign_flows_are_not(ovs, tmp_path: Path) -> None:
    topo = load_topology(SEED003)
    program = compile_host(topo, "hv1", "netdev")
    load_into_ovs(ovs, program, tmp_path)
    # Entries learn() would add and another tool's flows: never compared.
    ovs.ofctl("add-flow", "br-tun", f"cookie={COOKIE_LEARNED:#x},table=20,priority=1,dl_vlan=1,"
              "dl_dst=02:00:00:00:00:99 actions=output:1")
    ovs.ofctl("add-flow", "br-int", "cookie=0x1234,table=0,priority=60001,dl_src=02:00:00:00:00:98 actions=drop")
    clean = run_cli(str(SEED003), "--live", "--host", "hv1", env=ovs.env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "hv1 br-int: no drift" in clean.stdout and "hv1 br-tun: no drift" in clean.stdout, clean.stdout
    assert "live: no drift: 1 hosts, 2 bridges" in clean.stdout, clean.stdout

    int_flows = program.bridge("int").flows
    tun = program.bridge("tun")
    gone = int_flows[len(int_flows) // 2]  # deleted by hand
    changed = next(f for f in tun.flows if f.actions and f.table > 0)  # its actions replaced by drop
    group = tun.groups[0]
    ovs.ofctl("--strict", "del-flows", "br-int", f"table={gone.table},priority={gone.priority},{gone.match_text()}")
    ovs.ofctl("add-flow", "br-int", f"cookie={COOKIE_STATIC:#x},table=0,priority=60002,dl_src=02:00:00:00:00:97 actions=drop")
    ovs.ofctl("--strict", "mod-flows", "br-tun",
              f"table={changed.table},priority={changed.priority},{changed.match_text()} actions=drop")
    port = next(a.port for a in group.buckets[0].actions if isinstance(a, Output))
    ovs.ofctl("mod-group", "br-tun", f"group_id={group.group_id},type=all,bucket=actions=set_field:0x999->tun_id,output:{port}")

    res = run_cli(str(SEED003), "--live", "--host", "hv1", env=ovs.env)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    missing = [ln for ln in out.splitlines() if "missing flow:" in ln]
    extra = [ln for ln in out.splitlines() if "extra flow:" in ln]
    changes = [ln for ln in out.splitlines() if "changed flow:" in ln]
    groups = [ln for ln in out.splitlines() if "group" in ln and ("missing" in ln or "extra" in ln or "changed" in ln)]
    assert len(missing) == 1 and f"priority={gone.priority}" in missing[0], out
    assert len(extra) == 1 and "priority=60002" in extra[0] and "02:00:00:00:00:97" in extra[0], out
    assert len(changes) == 1 and f"priority={changed.priority}" in changes[0], out
    assert "    switch:  cookie=0x6f76736600000000 actions=drop" in out, out
    assert groups == ["  changed group:"] and "set_field:0x999->tun_id" in out, out
    assert "hv1 br-int: DRIFT: 2 flow(s), 0 group(s) differ" in out and "hv1 br-tun: DRIFT: 1 flow(s), 1 group(s) differ" in out
    assert "02:00:00:00:00:99" not in out and "02:00:00:00:00:98" not in out, out  # learned, foreign
    assert "live: DRIFT on 2 of 2 bridges" in out, out


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    topo = str(SEED003)
    for args, env, want in [
        (["--lab", "nosuchlab"], {}, "only with --live"),
        (["--live", "--lab", "nosuchlab"], {"OVSFLOW_LAB_DIR": str(tmp_path)}, "no lab named nosuchlab"),
        (["--live", "--host", "hv9"], {}, "no host hv9"),
        (["--live", "--host", "hv1"], {"OVS_RUNDIR": str(tmp_path)}, "hv1 br-int: cannot read flows"),
    ]:
        res = run_cli(topo, *args, env=env)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and want in res.stderr, (args, res.stderr)


@pytest.mark.ovs
def test_lab_every_host_no_drift_then_drift(lab_base: Path) -> None:
    """`--lab NAME`: every host of a lab built with the rendered script, read where `trace --live
    --lab` reads it; a flow deleted on one host is reported there only."""
    from conftest import lab_leftovers, lab_name

    from ovsflow.lab import lab as labmod

    name = lab_name("vl")
    try:
        state = labmod.up(load_topology(SEED003), name)
        res = run_cli(str(SEED003), "--live", "--lab", name)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "live: no drift: 3 hosts, 6 bridges" in res.stdout, res.stdout
        ovs = labmod.host_ovs(state, "hv2")
        program = compile_host(load_topology(SEED003), "hv2")
        gone = program.bridge("tun").flows[0]
        ovs.ofctl("--strict", "del-flows", "br-tun", f"table={gone.table},priority={gone.priority},{gone.match_text()}")
        res = run_cli(str(SEED003), "--live", "--lab", name)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "hv2 br-tun: DRIFT: 1 flow(s), 0 group(s) differ" in res.stdout, res.stdout
        assert [ln.split(":")[0] for ln in res.stdout.splitlines() if "DRIFT:" in ln] == ["hv2 br-tun"], res.stdout
    finally:
        labmod.down(name)
    assert lab_leftovers(name, lab_base)["netns"] == []
