"""The README's first command: `ovsflow demo` brings up the default lab, proves it, and removes it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ovsflow.lab import netns as nsmod

pytestmark = pytest.mark.ovs


def test_demo_passes_and_leaves_nothing_behind() -> None:
    name = f"ovt{os.getpid()}d"
    proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", "demo", "--name", name],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "30 pairs (12 same-network, 18 cross-network), 0 violations" in proc.stdout
    learned = [ln for ln in proc.stdout.splitlines() if "cookie=0x6f76736600000001" in ln]
    assert learned and all("table=20" in ln for ln in learned)
    assert "== demo passed" in proc.stdout
    # programmed by the live controller, which says what it did per switch: one bundle each, from empty
    assert "(programmed by the live controller)" in proc.stdout
    report = [ln for ln in proc.stdout.splitlines() if " connect: updated, added=" in ln]
    assert len(report) == 6 and all(" deleted=0 " in ln for ln in report), proc.stdout[-3000:]
    # its own namespaces only: other test sessions on this machine create and remove theirs meanwhile
    assert [n for n in nsmod.netns_list() if n.startswith(name)] == []
