"""`python -m bench [NAME ...] [--quick]`: run benchmarks, print a table, save results/<date>.json.

Every benchmark compares against its reference in the same run (ratios, medians) because these
machines are noisy. `--quick` runs tiny sizes: the test suite does that so the benchmarks never rot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import platform
import signal
import sys
from pathlib import Path

# every benchmark module under bench/ with a run(quick) -> rows function
BENCHMARKS = ["render", "install", "dataplane", "app", "migration", "codec", "fuzz", "routing", "verify", "trace"]


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    if isinstance(v, list):
        if len(v) == 3 and all(isinstance(x, float) for x in v):
            return f"{v[0]:.3f} [{v[1]:.3f}-{v[2]:.3f}]"
        return " / ".join(fmt(x) for x in v)
    return str(v)


def main() -> int:
    # SIGTERM (kill, timeout) unwinds like Ctrl-C, so every benchmark's finally removes its
    # namespaces and OVS daemons
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("names", nargs="*", default=BENCHMARKS, help=f"benchmarks to run ({', '.join(BENCHMARKS)})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's smoke run)")
    ap.add_argument("--results-dir", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        print(f"bench: unknown benchmark(s) {sorted(unknown)}; known: {BENCHMARKS}", file=sys.stderr)
        return 2
    rows = []
    for name in args.names:
        rows += importlib.import_module(f"bench.{name}").run(quick=args.quick)
    for row in rows:
        print(f"\n== {row['benchmark']}: {row['case']}" + (f"   (goal: {row['goal']})" if row.get("goal") else ""))
        for k, v in row["figures"].items():
            print(f"   {k:<58} {fmt(v)}")
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ") + ("-quick" if args.quick else "")
    target = out / f"{stamp}.json"
    target.write_text(json.dumps({"when": stamp, "machine": platform.platform(), "python": sys.version.split()[0],
                                  "rows": rows}, indent=1, default=str) + "\n")
    print(f"\nresults: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
