"""A bounded sample of the fuzzer (bench/fuzz.py; the long run is `python -m bench fuzz`): generated
topologies with one mutation each, by category. No traceback, no invalid document accepted, every
refusal one printable line in < 1 s, every accepted document renders every host."""

from __future__ import annotations

from bench.fuzz import CATEGORIES, fuzz


def test_fuzz_sample() -> None:
    r = fuzz(6_000, seed=20261129, seconds=30)
    assert r["failures"] == [], r["failures"][:3]
    assert r["tracebacks"] == 0 and r["accepted_invalid"] == 0
    assert r["cases"] >= 1_500, r  # about 500 cases/s here
    assert set(r["tried"]) == set(CATEGORIES) and min(r["tried"].values()) >= r["cases"] // len(CATEGORIES) - 1
    outcomes = r["outcomes"]
    assert outcomes.get("valid/accepted", 0) == r["tried"]["valid"]  # valid by construction: all accepted
    for category in ("wrong_type", "bad_key", "nonstr_key", "deep", "control_chars", "huge", "semantic", "special_file"):
        assert outcomes.get(f"{category}/refused", 0) == r["tried"][category]
    assert outcomes.get("alias/accepted", 0) > 0 and outcomes.get("alias/refused", 0) > 0
