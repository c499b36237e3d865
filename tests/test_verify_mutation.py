"""Mutation test for `ovsflow verify`: faults injected into compiled programs of random topologies
(with and without routers) are reported when they change forwarding (decided by the evaluator on
probe frames, before and after learning), and the unmutated programs raise no alarm."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import topologies
from test_routing import routed_topologies

from ovsflow.compiler import compile_all
from ovsflow.model import load_topology_data
from ovsflow.verify import verify
from ovsflow.verify.mutants import MUTATORS, forwarding


def measure() -> dict[str, object]:
    """Run the mutation campaign; the stats, the missed mutants and the false alarms."""
    stats = {"topologies": 0, "routed": 0, "false_alarms": 0, "changed": 0, "caught": 0, "unchanged": 0, "refused": 0}
    missed: list[str] = []
    alarms: list[str] = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(topologies(), routed_topologies()), seed=st.integers(0, 2**32 - 1))
    def probe(data: dict, seed: int) -> None:
        topo = load_topology_data(data, "hypothesis")
        programs = list(compile_all(topo).values())
        stats["topologies"] += 1
        stats["routed"] += bool(topo.routers)
        res = verify(topo, programs, replay=False)
        if not res.ok:
            stats["false_alarms"] += 1
            alarms.append(f"{res.violations[0].kind}: {res.violations[0].message}\n{data}")
            return
        base = forwarding(topo, programs)
        assert base is not None, "the evaluator refuses a compiled program"
        rng = random.Random(seed)
        for mutate in MUTATORS:
            mutant = mutate(rng, programs)
            if mutant is None:
                continue
            desc, progs = mutant
            seen = forwarding(topo, progs)
            if seen is None:  # OVS would refuse the program: not a forwarding change to judge
                stats["refused"] += 1
            elif seen == base:
                stats["unchanged"] += 1
            else:
                stats["changed"] += 1
                if verify(topo, progs, replay=False).ok:
                    missed.append(desc)
                else:
                    stats["caught"] += 1

    probe()
    return {"stats": stats, "missed": missed, "alarms": alarms}


def test_mutation_score_and_no_false_alarms() -> None:
    # Measured in a fresh interpreter: inside the full suite the count of forwarding-changing
    # mutants moved by a few (e.g. 119/125 instead of 119/122) depending on which tests ran before
    # in the same process, a state dependence not found yet; a fresh process gives the same figures
    # on every run and every hash seed.
    proc = subprocess.run([sys.executable, "-c", "import json, test_verify_mutation as t; print(json.dumps(t.measure()))"],
                          cwd=Path(__file__).parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                            str(Path(__file__).parent.parent)])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    stats, missed, alarms = result["stats"], result["missed"], result["alarms"]
    score = stats["caught"] / max(1, stats["changed"])
    print(f"\nverify mutation score: {score:.1%} ({stats['caught']}/{stats['changed']} forwarding-changing mutants "
          f"reported); {stats['false_alarms']} false alarms over {stats['topologies']} valid topologies "
          f"({stats['routed']} with routers); {stats['unchanged']} mutants changed nothing, {stats['refused']} refused")
    assert stats["topologies"] >= 50 and stats["routed"] >= 10, stats
    assert stats["false_alarms"] == 0, "\n\n".join(alarms[:3])
    assert stats["changed"] >= 100, stats
    assert score >= 0.95, "missed:\n" + "\n".join(missed[:20])
