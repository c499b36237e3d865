"""Digests of every render ovsflow produced at a reference commit, to prove refactors change nothing.

The cases: every host of every labs/*/topology.yaml and tests/data/*.yaml, and every host of synthetic topologies in both
modes (l2pop with IPv4 addresses, so ARP responders are included). For each (topology, host) the
digest covers the dry-run script and both bridges' bare flow files. `python tests/golden_renders.py
--write` records the current digests into tests/data/render-digests.json (do that only in a commit
that means to change the output, and say why); tests/test_render_golden.py compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is importable from the repository

from bench.synth import synthetic  # noqa: E402
from ovsflow.graph import TopologyGraph  # noqa: E402
from ovsflow.model import load_topology, load_topology_data  # noqa: E402
from ovsflow.render import render_flows, render_script  # noqa: E402

DIGESTS = ROOT / "tests" / "data" / "render-digests.json"
SYNTHETIC = {  # name -> synthetic() arguments
    "synth-learn-30h": dict(hosts=30, networks=60, ports=1500, seed=7, mode="learn"),
    "synth-l2pop-30h": dict(hosts=30, networks=60, ports=1500, seed=8, mode="l2pop", ips=True),
}


def cases() -> Iterator[tuple[str, str, str]]:
    """(case name, host, text) for every render the digests cover."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # sources are named relative to the repository: the same in every clone
    try:
        topos = [(p.parent.name, load_topology(str(p.relative_to(ROOT)))) for p in sorted(ROOT.glob("labs/*/topology.yaml"))]
        topos += [(p.stem, load_topology(str(p.relative_to(ROOT)))) for p in sorted(ROOT.glob("tests/data/*.yaml"))]
    finally:
        os.chdir(cwd)
    topos += [(name, load_topology_data(synthetic(**args), source=name)) for name, args in SYNTHETIC.items()]  # type: ignore[arg-type]
    for name, topo in topos:
        graph = TopologyGraph(topo)
        for host in sorted(topo.hosts):
            text = render_script(topo, host, graph=graph) + render_flows(topo, host, graph=graph)
            yield name, host, text


def digests() -> dict[str, str]:
    return {f"{name}/{host}": hashlib.sha256(text.encode()).hexdigest() for name, host, text in cases()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="record the current digests")
    args = ap.parse_args()
    now = digests()
    if args.write:
        DIGESTS.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(now)} digests to {DIGESTS}")
        return 0
    old = json.loads(DIGESTS.read_text())
    diff = sorted(k for k in old.keys() | now.keys() if old.get(k) != now.get(k))
    print(f"{len(now)} renders, {len(diff)} differ" + "".join(f"\n  {k}" for k in diff))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
