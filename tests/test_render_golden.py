"""Renders are byte-identical to the recorded reference (tests/golden_renders.py says how and why)."""

from __future__ import annotations

import json

from golden_renders import DIGESTS, digests


def test_renders_match_reference_digests() -> None:
    recorded = json.loads(DIGESTS.read_text())
    now = digests()
    assert len(recorded) >= 40, "the reference should cover every lab host and the synthetic topologies"
    changed = sorted(k for k in recorded.keys() | now.keys() if recorded.get(k) != now.get(k))
    assert not changed, f"renders differ from the reference: {changed[:10]}"
