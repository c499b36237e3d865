"""A bounded sample of the fuzzer (bench/fuzz.py; the long run is `python -m bench fuzz`): generated
topologies with one mutation each, by category. No traceback, no invalid document accepted, every
refusal one printable line in < 1 s, every accepted document renders every host."""

from __future__ import annotations

from pathlib import Path

from bench.fuzz import CATEGORIES, fuzz


def test_fuzz_sample() -> None:
    r = fuzz(6_000, seed=20261129, seconds=25)
    assert r["failures"] == [], r["failures"][:3]
    assert r["tracebacks"] == 0 and r["accepted_invalid"] == 0
    assert r["cases"] >= 1_500, r  # about 500 cases/s here
    assert set(r["tried"]) == set(CATEGORIES) and min(r["tried"].values()) >= r["cases"] // len(CATEGORIES) - 1
    outcomes = r["outcomes"]
    assert outcomes.get("valid/accepted", 0) == r["tried"]["valid"]  # valid by construction: all accepted
    for category in ("wrong_type", "bad_key", "nonstr_key", "deep", "control_chars", "huge", "semantic", "special_file"):
        assert outcomes.get(f"{category}/refused", 0) == r["tried"][category]
    assert outcomes.get("alias/accepted", 0) > 0 and outcomes.get("alias/refused", 0) > 0


def test_fuzz_benchmark_quick(tmp_path: Path) -> None:
    """`python -m bench fuzz --quick` prints cases per category, tracebacks, accepted invalid,
    throughput, and records them."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "bench", "fuzz", "--quick", "--results-dir", str(tmp_path)],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "== fuzz: 2000 generated topologies, 12 categories" in proc.stdout
    for line in ("tracebacks                                                 0", "accepted invalid                                           0",  # noqa: E501
                 "other failures                                             0", "throughput (cases/s)", "tried: special_file"):
        assert line in proc.stdout, line
    [result] = list(tmp_path.glob("*-quick.json"))
    [row] = json.loads(result.read_text())["rows"]
    assert row["raw"]["cases"] == 2000 and sum(row["raw"]["tried"].values()) == 2000 and row["raw"]["failures"] == []
