"""Shared fixtures: private OVS instances in fresh network namespaces, and leak guards.

Tests marked `ovs` need root and Open vSwitch; without them they FAIL with a clear message (a
skipped end-to-end test is a test that silently stopped testing). Every namespace and OVS daemon a
test creates is removed by a finalizer, and a session-wide guard fails the run if any namespace,
root veth or OVS process created during the session is still there at the end.

The machine may be shared with other test runs, so the guard attributes leftovers to this session
by name: every namespace this session creates contains SESSION_TAG, every OVS daemon's command line
contains SESSION_ROOT.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovsflow.lab import netns as nsmod
from ovsflow.lab.ovs import OvsInstance, missing_binaries

SESSION_TAG = f"ovt{os.getpid()}"  # in every netns name this session creates
_counter = itertools.count(1)


def _ovs_processes() -> dict[int, str]:
    """pid -> command line of every live ovsdb-server / ovs-vswitchd on the machine."""
    procs: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = status.split("\n", 1)[0].split(":", 1)[1].strip()
        state = next((ln for ln in status.splitlines() if ln.startswith("State:")), "")
        if name in ("ovsdb-server", "ovs-vswitchd") and "Z" not in state.split(":", 1)[1][:3]:
            procs[int(entry.name)] = cmdline.strip()
    return procs


def _snapshot() -> dict[str, set[str]]:
    return {
        "netns": set(nsmod.netns_list()),
        "veths in root netns": set(nsmod.veth_names_in_root()),
        "OVS processes": {f"{pid} {cmd}" for pid, cmd in _ovs_processes().items()},
    }


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    """A short directory for this session's OVS state (short: unix socket paths are limited)."""
    root = Path(tempfile.mkdtemp(prefix=f"{SESSION_TAG}-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_leaks_guard() -> Iterator[None]:
    """Fail the session if namespaces, root veths or OVS daemons it created outlive it."""
    if os.geteuid() != 0:
        yield
        return
    before = _snapshot()
    yield
    leaked: dict[str, set[str]] = {}
    for _ in range(50):  # exiting daemons linger briefly while their threads finish
        after = _snapshot()
        leaked = {
            k: {x for x in after[k] - before[k] if SESSION_TAG in x or k == "veths in root netns"}
            for k in after
        }
        if not any(leaked.values()):
            return
        time.sleep(0.1)
    lines = [f"  {k}: {sorted(v)}" for k, v in leaked.items() if v]
    pytest.fail("test session leaked resources (clean up in a finalizer):\n" + "\n".join(lines))


@pytest.fixture(scope="session")
def ovs_required() -> None:
    """FAIL (never skip) when this machine cannot run the OVS tests, saying how to fix it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root (network namespaces and OVS need root)")
    missing = missing_binaries()
    if missing:
        problems.append(f"Open vSwitch missing: {', '.join(missing)} (run `bash .ci/setup`)")
    for tool in ("ip", "ethtool", "tcpdump", "ping"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (run `bash .ci/setup`)")
    if problems:
        pytest.fail("OVS tests cannot run here: " + "; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _ovs_marker_requires_ovs(request: pytest.FixtureRequest) -> None:
    """Tests marked `ovs` get the root/OVS guard even if they use no OVS fixture directly."""
    if request.node.get_closest_marker("ovs") is not None:
        request.getfixturevalue("ovs_required")


def new_netns_name(kind: str = "ns") -> str:
    """A fresh namespace name owned by this session (the leak guard recognises SESSION_TAG)."""
    return f"{SESSION_TAG}-{kind}{next(_counter)}"


@pytest.fixture
def netns_factory(ovs_required: None) -> Iterator:
    """Create namespaces on demand (`netns_factory("hv")` -> name); all deleted afterwards."""
    created: list[str] = []

    def make(kind: str = "ns") -> str:
        name = new_netns_name(kind)
        created.append(name)
        nsmod.netns_add(name)
        return name

    yield make
    for name in reversed(created):
        for pid in nsmod.netns_pids(name):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        nsmod.netns_delete(name)


@pytest.fixture
def ovs_factory(ovs_required: None, session_root: Path, netns_factory) -> Iterator:
    """Start private OVS instances on demand, each in its own fresh netns; all stopped afterwards."""
    started: list[OvsInstance] = []

    def make(name: str = "ovs") -> OvsInstance:
        ns = netns_factory("ovs")
        inst = OvsInstance(name, Path(tempfile.mkdtemp(prefix=f"{name}-", dir=session_root)), ns)
        started.append(inst)
        return inst.start()

    yield make
    for inst in reversed(started):
        inst.stop()  # before netns_factory's finalizer deletes the namespace


@pytest.fixture
def ovs(ovs_factory) -> OvsInstance:
    """One started private OVS (userspace datapath capable) in a fresh netns, cleaned up after."""
    return ovs_factory("ovs")


@pytest.fixture(scope="session")
def lab_base(ovs_required: None, session_root: Path) -> Iterator[Path]:
    """Point every lab this session builds (API and CLI subprocesses) at the session's directory."""
    base = session_root / "labs"
    old = os.environ.get("OVSFLOW_LAB_DIR")
    os.environ["OVSFLOW_LAB_DIR"] = str(base)
    yield base
    if old is None:
        os.environ.pop("OVSFLOW_LAB_DIR", None)
    else:
        os.environ["OVSFLOW_LAB_DIR"] = old


@functools.cache
def lab_check_module(lab_dir: Path):
    """A labs/*/check.py as a module (registered in sys.modules: its dataclasses look themselves up)."""
    spec = importlib.util.spec_from_file_location(f"lab_check_{lab_dir.name.replace('-', '_')}", lab_dir / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def running_lab(lab_dir: Path, name: str) -> Iterator[Any]:
    """labs/<lab_dir>/topology.yaml up under `name` as an Exercise; down again even if the test fails."""
    from ovsflow.lab import lab as labmod
    from ovsflow.lab.exercise import Exercise
    from ovsflow.model import load_topology

    try:
        state = labmod.up(load_topology(lab_dir / "topology.yaml"), name)
        yield Exercise(state, echo=print)
    finally:
        labmod.down(name)


def lab_name(kind: str) -> str:
    """A lab name owned by this session: its namespaces carry SESSION_TAG."""
    return f"{SESSION_TAG}{kind}"


def lab_leftovers(name: str, base: Path) -> dict[str, list[str]]:
    """What of lab `name` still exists: namespaces, OVS daemons, its directory."""
    return {
        "netns": [n for n in nsmod.netns_list() if n.startswith(name + "-")],
        "ovs": [c for c in _ovs_processes().values() if str(base / name) in c],
        "dir": [str(base / name)] if (base / name).exists() else [],
    }


def root_veths() -> set[str]:
    return set(nsmod.veth_names_in_root())
