"""`ovsflow trace --live`: the evaluator's path against `ovs-appctl ofproto/trace` on real switches.

The differential test: every ordered pair of ports of every labs/*/topology.yaml and
tests/data/*.yaml, and a sample of random topologies (with and without routers), loaded into one
private OVS per host; ICMP and ARP from each port to each other port; per hop both must agree on the
lookups and on the outputs (port, tunnel key) or the drop. `python -m bench trace` runs >= 50 + 50
random topologies. Also: the parser on OVS's two ways of printing a patch port, a tampered switch
flagged (exit 1), and --live --lab on the seed-003 lab with a real underlay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lab_name
from hypothesis import HealthCheck, given, settings
from test_properties import topologies
from test_routing import routed_topologies

from ovsflow.lab import lab as labmod
from ovsflow.model import load_topology, load_topology_data
from ovsflow.trace import Tracer
from ovsflow.trace_diff import differential, load_program
from ovsflow.trace_live import parse_ofproto_trace

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(ROOT.glob("labs/*/topology.yaml")) + sorted((ROOT / "tests" / "data").glob("*.yaml"))
SEED = ROOT / "labs" / "03-seed003" / "topology.yaml"

# OVS 3.1 on this machine: a patch output that is not the last action nests the peer bridge (indented);
# a last-action patch output continues flat at the same level.
NESTED = """\
bridge("br-int")
----------------
 0. in_port=4838, priority 1, cookie 0x6f76736600000000
    goto_table:10
10. dl_vlan=101, priority 2, cookie 0x6f76736600000000
    output:1

    bridge("br-tun")
    ----------------
         0. in_port=1, priority 1, cookie 0x6f76736600000000
            goto_table:22
        22. dl_vlan=101, priority 1, cookie 0x6f76736600000000
            pop_vlan
            group:101
            bucket 0
                    set_field:0x65->tun_id
                    output:41047
                     -> output to native tunnel
            bucket 1
                    set_field:0x66->tun_id
                    output:50932
        21. arp, priority 1, cookie 0x6f76736600000000
            IN_PORT

        bridge("br-int")
        ----------------
         0. in_port=1,dl_vlan=101, priority 1, cookie 0x6f76736600000000
            output:4838
    goto_table:20
20. dl_vlan=101, priority 1, cookie 0x6f76736600000000
    output:4838
     >> skipping output to input port

Final flow: unchanged
"""


def test_parser_follows_nested_and_flat_patch_ports() -> None:
    patch = {"br-int": {1}, "br-tun": {1}}
    tunnels = {"br-tun": {41047, 50932}}
    hits, outs = parse_ofproto_trace(NESTED, patch, tunnels, in_port=4838)
    assert hits == [("br-int", 0, 1), ("br-int", 10, 2), ("br-tun", 0, 1), ("br-tun", 22, 1), ("br-tun", 21, 1),
                    ("br-int", 0, 1), ("br-int", 20, 1)]
    # each bucket its own key; IN_PORT in br-tun is its patch port (not an output); br-int's second
    # visit delivers to 4838 (entered from the patch port, so not its in_port); the root's is skipped
    assert outs == [("br-tun", 41047, 0x65), ("br-tun", 50932, 0x66), ("br-int", 4838, None)]


def pool_for(ovs_factory, n: int, pool: list) -> list:
    while len(pool) < n:
        pool.append(ovs_factory(f"hv{len(pool)}"))
    return pool


def check_topology(topo, pool: list, what: str, kinds: tuple[str, ...] = ("icmp", "arp")) -> int:
    tracer = Tracer(topo)
    switches = {h: pool[i] for i, h in enumerate(sorted(topo.hosts))}
    result = differential(tracer, switches, kinds)
    lines = [f"{w}: {h.host} {h.bridge} in_port={h.in_port}\n evaluator {h.mine}\n ovs       {h.theirs}\n{h.ovs_text}"
             for w, h in result.disagreements[:3]]
    assert not result.disagreements, f"{what}: {len(result.disagreements)} disagreement(s)\n" + "\n".join(lines)
    n = len(topo.ports)
    assert result.traces == n * (n - 1) * len(kinds)
    return result.hops


def test_every_lab_and_data_topology_agrees_with_ofproto_trace(ovs_factory) -> None:
    pool: list = []
    hops = 0
    for path in FILES:
        topo = load_topology(path)
        hops += check_topology(topo, pool_for(ovs_factory, len(topo.hosts), pool), str(path.relative_to(ROOT)))
    assert len(FILES) >= 12 and hops > 1000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=topologies())
def test_random_topologies_agree_with_ofproto_trace(ovs_factory, data: dict) -> None:
    topo = load_topology_data(data, "hypothesis")
    check_topology(topo, pool_for(ovs_factory, len(topo.hosts), RANDOM_POOL), "random", ("icmp",))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=routed_topologies())
def test_random_routed_topologies_agree_with_ofproto_trace(ovs_factory, data: dict) -> None:
    topo = load_topology_data(data, "hypothesis")
    check_topology(topo, pool_for(ovs_factory, len(topo.hosts), ROUTED_POOL), "routed", ("icmp",))


RANDOM_POOL: list = []
ROUTED_POOL: list = []


@pytest.fixture(autouse=True)
def _fresh_pools() -> None:
    """The pools hold instances of one test's ovs_factory: emptied before each test."""
    RANDOM_POOL.clear()
    ROUTED_POOL.clear()


# ---------------------------------------------------------------------------------------------
# The command: --live against the local OVS (OVS_RUNDIR), and a tampered switch


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "ovsflow.cli", "trace", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_live_flags_a_switch_that_differs(ovs) -> None:
    topo = load_topology(SEED)
    load_program(ovs, Tracer(topo).program("hv1"))
    r = cli(str(SEED), "--from", "vm1", "--to", "vm2", "--live", env=ovs.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "  hv1 br-int in_port=4838: agree; evaluator -> br-tun:" in r.stdout
    assert "hv2 br-tun in_port=59746: not asked (no switch for hv2)" in r.stdout
    assert r.stdout.rstrip().endswith("live: the switches agree with the evaluator")
    # someone drops blue's flood in hv1's br-tun behind ovsflow's back
    ovs.ofctl("mod-flows", ovs.mgmt("br-tun"), "table=22,dl_vlan=101,actions=drop")
    r = cli(str(SEED), "--from", "vm1", "--to", "vm2", "--live", "--json", env=ovs.env)
    assert r.returncode == 1, r.stdout + r.stderr
    live = json.loads(r.stdout)["live"]
    hv1 = live["hops"][0]
    assert live["agree"] is False and hv1["agree"] is False and hv1["ovs"]["outputs"] == []
    assert len(hv1["evaluator"]["outputs"]) == 2


def test_live_without_a_switch_is_one_line(tmp_path: Path) -> None:
    r = cli(str(SEED), "--from", "vm1", "--to", "vm2", "--live", "--lab", "nolabhere")
    assert (r.returncode, r.stderr) == (1, "ovsflow trace: --live: no lab named nolabhere\n")


@pytest.mark.ovs
def test_live_in_the_seed003_lab(lab_base: Path) -> None:
    name = lab_name("tl")
    try:
        labmod.up(load_topology(SEED), name)
        for args in (["--from", "vm1", "--to", "vm2"], ["--from", "vm4", "--to", "vm6", "--learned"],
                     ["--from", "vm1", "--to", "vm5", "--arp"]):
            r = cli(str(SEED), *args, "--live", "--lab", name)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "not asked" not in r.stdout and "DISAGREE" not in r.stdout
    finally:
        labmod.down(name)
