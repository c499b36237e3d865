"""Every exercise under labs/ is brought up and its own check (labs/*/check.py) must pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import lab_check_module, lab_name

from ovsflow.lab import lab as labmod
from ovsflow.lab.exercise import Exercise
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

LABS = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "labs").glob("*/check.py"))


def test_labs_are_there() -> None:
    names = [p.name for p in LABS]
    assert len(names) >= 4, names
    for p in LABS:
        assert (p / "README.md").is_file() and (p / "topology.yaml").is_file(), p


@pytest.mark.parametrize("lab_dir", LABS, ids=[p.name for p in LABS])
def test_lab_check_passes(lab_dir: Path, lab_base: Path) -> None:
    name = lab_name(f"x{lab_dir.name[:2]}")
    try:
        state = labmod.up(load_topology(lab_dir / "topology.yaml"), name)
        lines: list[str] = []
        ex = Exercise(state, echo=lines.append)
        lab_check_module(lab_dir).check(ex)
        print("\n".join(lines))
        assert ex.results, "the check verified nothing"
        assert not ex.failures, "\n".join(lines)
        if lab_dir.name.startswith("02-"):  # flood-and-learn: table 20 filled by learn()
            assert any("hv1 learned vm2" in t and ok for ok, t in ex.results)
            assert labmod.host_ovs(state, "hv1").dump_flows("br-tun", "table=20,cookie=0x6f76736600000001/-1")
    finally:
        labmod.down(name)
