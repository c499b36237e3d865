"""Regenerate the pictures the README shows: `.venv/bin/python docs/pictures.py` (needs Graphviz's dot).

Each picture is one ovsflow command; this script runs exactly those, so what the README shows is what
the commands draw (tests/test_graph.py checks the committed files still name what they should)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    ["graph", "labs/03-seed003/topology.yaml", "-o", "docs/topology-seed003.svg"],
    ["graph", "tests/data/routed.yaml", "-o", "docs/topology-routed.svg"],
    ["pipeline", "--graph", "-o", "docs/pipeline.svg"],
    ["trace", "tests/data/routed.yaml", "--from", "a1", "--to", "o1", "--svg", "docs/trace-routed.svg"],
]


def main() -> int:
    for args in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "ovsflow.cli", *args], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"ovsflow {' '.join(args)}: {proc.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"ovsflow {' '.join(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
