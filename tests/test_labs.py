"""Every exercise under labs/ is brought up and its own check (labs/*/check.py) must pass."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import lab_name
from ovsflow.lab import lab as labmod
from ovsflow.lab.exercise import Exercise
from ovsflow.model import load_topology

pytestmark = pytest.mark.ovs

LABS = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "labs").glob("*/check.py"))


def load_check(lab_dir: Path):
    spec = importlib.util.spec_from_file_location(f"lab_check_{lab_dir.name.replace('-', '_')}", lab_dir / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (with postponed annotations) look themselves up here
    spec.loader.exec_module(module)
    return module.check


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
        load_check(lab_dir)(ex)
        print("\n".join(lines))
        assert ex.results, "the check verified nothing"
        assert not ex.failures, "\n".join(lines)
        if lab_dir.name.startswith("02-"):  # flood-and-learn: table 20 filled by learn()
            assert any("hv1 learned vm2" in t and ok for ok, t in ex.results)
            assert labmod.host_ovs(state, "hv1").dump_flows("br-tun", "table=20,cookie=0x6f76736600000001/-1")
    finally:
        labmod.down(name)
