"""Table ids live only in pipelines/*.yaml: renumbering them there changes nothing but the ids.

A copy of the declarations with every table (but OpenFlow's table 0) moved to other ids is compiled
for every lab topology and the test-data topologies (IPv6 ND responder included). The programs
must equal the default ones once ids are mapped back; they must load into a real ovs-vswitchd
(ovs-ofctl accepts every flow, diff-flows finds nothing); and the evaluator must deliver every
frame exactly as with the default numbering.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_properties import check_isolated, load_into_ovs

from ovsflow import flow as F
from ovsflow.compiler import compile_all
from ovsflow.evaluator import Fabric
from ovsflow.fields import BROADCAST
from ovsflow.model import Topology, load_topology
from ovsflow.packet import Frame
from ovsflow.pipeline import Pipelines, pipelines_dir
from ovsflow.program import HostProgram

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted(ROOT.glob("labs/*/topology.yaml")) + sorted((ROOT / "tests" / "data").glob("*.yaml"))
NEW_IDS = {  # forward gotos must stay forward: flood after unicast/arp_responder, nd_reply after arp_responder
    "tun": {"classify": 0, "from_int": 5, "gre_in": 7, "vxlan_in": 8, "geneve_in": 9, "learn": 15,
            "unicast": 30, "learned": 32, "arp_responder": 31, "nd_reply": 35, "flood": 40},
    "int": {"classify": 0, "antispoof": 7, "from_vm": 12, "gateway": 13, "route": 16, "to_vm": 25},
}


@pytest.fixture(scope="module")
def renumbered() -> tuple[Pipelines, dict[str, dict[int, int]]]:
    """(renumbered pipelines, role -> new id -> default id)."""
    tmp = Path(tempfile.mkdtemp(prefix="ovsflow-pipelines-"))
    back: dict[str, dict[int, int]] = {}
    for role, ids in NEW_IDS.items():
        data = yaml.safe_load((pipelines_dir() / f"br-{role}.yaml").read_text())
        assert {t["name"] for t in data["tables"]} == set(ids), "NEW_IDS must rename every declared table"
        back[role] = {ids[t["name"]]: t["id"] for t in data["tables"]}
        for t in data["tables"]:
            t["id"] = ids[t["name"]]
        (tmp / f"br-{role}.yaml").write_text(yaml.safe_dump(data))
    try:
        yield Pipelines.load(str(tmp)), back
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _map_action(a: F.Action, ids: dict[int, int]) -> F.Action:
    if isinstance(a, (F.GotoTable, F.Learn)):
        return replace(a, table=ids[a.table])
    return a


def mapped_back(program: HostProgram, back: dict[str, dict[int, int]]) -> HostProgram:
    bridges = []
    for b in program.bridges:
        ids = back[b.role]
        flows = tuple(F.Flow(ids[f.table], f.priority, f.match, tuple(_map_action(a, ids) for a in f.actions),
                             f.cookie, f.hard_timeout, f.idle_timeout) for f in b.flows)
        limit = (ids[b.learn_limit[0]], b.learn_limit[1]) if b.learn_limit else None  # the learned table's cap
        bridges.append(replace(b, flows=tuple(sorted(flows, key=F.Flow.sort_key)), parts=(), learn_limit=limit))
    return replace(program, bridges=tuple(bridges))


def _programs(path: Path, pipelines: Pipelines | None) -> tuple[Topology, dict[str, HostProgram]]:
    topo = load_topology(path)
    return topo, compile_all(topo, "netdev", pipelines=pipelines)


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.parent.name if p.name == "topology.yaml" else p.stem)
def test_renumbered_program_differs_only_in_table_ids(path: Path, renumbered) -> None:
    pipelines, back = renumbered
    _, default = _programs(path, None)
    _, moved = _programs(path, pipelines)
    for host, program in default.items():
        tables = {f.table for b in moved[host].bridges for f in b.flows}
        assert len(tables) > 1 and not tables & {2, 4, 10, 11, 20, 21, 22}, "the copy must really move tables"
        want = replace(program, bridges=tuple(replace(b, parts=()) for b in program.bridges))
        assert mapped_back(moved[host], back) == want


def test_renumbered_programs_forward_like_the_default(renumbered) -> None:
    pipelines, _ = renumbered
    path = ROOT / "tests" / "data" / "seed003-l2pop.yaml"
    topo, default = _programs(path, None)
    _, moved = _programs(path, pipelines)
    fabrics = Fabric(default.values()), Fabric(moved.values())
    frames = []
    for a, pa in sorted(topo.ports.items()):
        frames.append((a, Frame.ethernet(pa.mac, BROADCAST, payload=f"bcast {a}")))
        if pa.ip:
            frames.append((a, Frame.arp_request(pa.mac, pa.ip, "198.51.100.200", payload=f"arp {a}")))
        for b, pb in sorted(topo.ports.items()):
            if a != b:
                frames.append((a, Frame.ethernet(pa.mac, pb.mac, payload=f"{a}>{b}")))
    delivered = 0
    for sender, frame in frames:
        p = topo.ports[sender]
        got = [fab.inject(p.host, p.iface, frame) for fab in fabrics]
        assert got[0].delivered_to() == got[1].delivered_to(), f"{frame}: {got[0].trace}\n---\n{got[1].trace}"
        check_isolated(topo, got[1], sender, str(frame))
        delivered += len(got[1].delivered_to())
    assert delivered > len(frames) // 2, "the frames must reach somebody"


@pytest.mark.ovs
def test_renumbered_programs_load_into_ovs(ovs, renumbered) -> None:
    pipelines, _ = renumbered
    with tempfile.TemporaryDirectory(dir=ovs.workdir) as tmp:
        for path in TOPOLOGIES:
            for program in _programs(path, pipelines)[1].values():
                load_into_ovs(ovs, program, Path(tmp))
