"""`python -m bench codec --quick` runs in every test run, so the Ryu-vs-codec figures never rot.
Not a timed test: it checks the benchmark measures what it says, on the flows it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_codec_benchmark_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "codec", "--quick", "--results-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "== codec:" in proc.stdout and "encode: Ryu objects + serialize" in proc.stdout
    [result] = list(tmp_path.glob("*-quick.json"))
    [row] = json.loads(result.read_text())["rows"]
    sys.path.insert(0, str(ROOT))
    from bench.codec import _flows

    assert row["case"].startswith(f"{len(_flows(True))} flows of one host")
    raw = row["raw"]
    assert len(raw) == 7 and all(len(v) == 3 and all(t > 0 for t in v) for v in raw.values())
    assert row["figures"]["Ryu objects / codec, encoding one flow at a time (x)"] > 0
