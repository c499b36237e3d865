"""Pictures: `ovsflow graph`, `ovsflow pipeline --graph`, `ovsflow trace --svg` write SVG/PNG files that
name what they draw; Graphviz failures (no dot, dot's own error, a bad suffix) are one line, exit 2;
the README's pictures under docs/ are the ones docs/pictures.py draws."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "labs" / "03-seed003" / "topology.yaml"
ROUTED = ROOT / "tests" / "data" / "routed.yaml"


def ovsflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def svg_texts(path: Path) -> set[str]:
    return {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())}


def test_graph_draws_hosts_vms_tunnels_and_routers(tmp_path: Path) -> None:
    out = tmp_path / "t.svg"
    r = ovsflow("graph", str(ROUTED), "-o", str(out))
    assert r.returncode == 0 and r.stdout == f"wrote {out}\n", r.stderr
    texts = svg_texts(out)
    assert {"hv1", "hv2", "hv3", "VTEP 192.0.2.11", "w1", "d1", "a1", "o1", "r1", "r2", "centralized"} <= texts
    assert {"web vxlan 5000", "db gre 6000"} <= texts  # the tunnel mesh, per network
    png = tmp_path / "t.png"
    assert ovsflow("graph", str(SEED), "-o", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_graph_has_every_table_and_goto(tmp_path: Path) -> None:
    out = tmp_path / "p.svg"
    r = ovsflow("pipeline", "--graph", "-o", str(out))
    assert r.returncode == 0, r.stderr
    texts = svg_texts(out)
    for name in ("0 classify", "10 from_vm", "11 gateway", "12 route", "20 to_vm", "2 from_int", "4 vxlan_in",
                 "10 learn", "19 unicast", "20 learned", "21 arp_responder", "22 flood", "5 antispoof", "miss", "patch-tun",
                 "patch-int"):
        assert name in texts, name
    assert "br-int" in ovsflow("pipeline").stdout  # the listing is unchanged without --graph


def test_trace_svg_draws_the_path(tmp_path: Path) -> None:
    out = tmp_path / "tr.svg"
    r = ovsflow("trace", str(ROUTED), "--from", "a1", "--to", "o1", "--svg", str(out))
    assert r.returncode == 0 and "delivered: o1 on hv2" in r.stdout, r.stderr
    texts = svg_texts(out)
    assert {"geneve key 7000", "vxlan key 8000", "delivered"} <= texts
    drop = tmp_path / "drop.svg"
    assert ovsflow("trace", str(SEED), "--from", "vm1", "--to", "vm2", "--svg", str(drop)).returncode == 0
    assert {"dropped", "br-int table 20", "table miss: dropped"} <= svg_texts(drop)


@pytest.mark.parametrize("args, message", [
    (["graph", str(SEED), "-o", "x.pdf"], "ovsflow graph: x.pdf: the file must end in .svg or .png"),
    (["pipeline", "--graph"], "ovsflow pipeline: --graph needs -o FILE.svg or FILE.png"),
    (["pipeline", "-o", "p.svg"], "ovsflow pipeline: -o is for --graph (p.svg)"),
    (["graph", str(SEED), "-o", "/nonexistent-dir/t.svg"], "ovsflow graph: /nonexistent-dir/t.svg: No such file or directory"),
])
def test_bad_requests_are_one_line(args: list[str], message: str) -> None:
    r = ovsflow(*args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", message + "\n")


def test_dot_failures_are_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    dot = fake / "dot"
    dot.write_text("#!/bin/sh\necho 'Error: <stdin>: syntax error in line 1 near x' >&2\necho more >&2\nexit 1\n")
    dot.chmod(0o755)
    r = ovsflow("graph", str(SEED), "-o", str(tmp_path / "t.svg"), env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert (r.returncode, r.stderr) == (2, "ovsflow graph: dot failed: Error: <stdin>: syntax error in line 1 near x\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ovsflow("trace", str(SEED), "--from", "vm1", "--to", "vm2", "--svg", str(tmp_path / "t.svg"),
                env={"PATH": str(empty)})
    assert r.returncode == 2 and r.stderr == "ovsflow trace: Graphviz's dot was not found (install the graphviz package)\n"


def test_readme_pictures_are_what_the_commands_draw(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    from pictures import COMMANDS  # type: ignore[import-not-found]

    readme = (ROOT / "README.md").read_text()
    for args in COMMANDS:
        target = args[-1]
        assert f"({target})" in readme, f"README does not show {target}"
        mine = tmp_path / Path(target).name
        assert ovsflow(*args[:-1], str(mine)).returncode == 0
        assert svg_texts(mine) == svg_texts(ROOT / target), f"{target} is stale: run docs/pictures.py"
