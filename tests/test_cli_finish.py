"""Issue 17, the CLI's finish: an example in every command's --help, --version, shell completion for
bash and zsh (click's `_OVSFLOW_COMPLETE`), colour only on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ovsflow import __version__
from ovsflow.cli import main

OVSFLOW = Path(sys.executable).with_name("ovsflow")  # the console script, as a shell calls it
ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = str(ROOT / "labs" / "03-seed003" / "topology.yaml")


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_the_command_tree_is_what_this_test_expects() -> None:
    found = {" ".join(c) for c in commands()}
    assert {"", "validate", "render", "pipeline", "ovsdb-ensure", "demo", "trace", "graph", "verify", "lab",
            "lab up", "lab down", "lab status", "lab check", "lab exec", "lab capture"} <= found, found
    assert len(found) >= 16


@pytest.mark.parametrize("path", commands(), ids=lambda c: " ".join(c) or "ovsflow")
def test_every_help_exits_0_and_shows_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, result.output
    example = result.output.split("Example", 1)[1]
    assert "ovsflow " in example  # a command line, not just the word


def test_version() -> None:
    proc = subprocess.run([str(OVSFLOW), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ovsflow, version {__version__}"
    assert subprocess.run([str(OVSFLOW), "-V"], capture_output=True, text=True).stdout == proc.stdout


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F _ovsflow_completion ovsflow"),
                                          ("zsh", "#compdef ovsflow")])
def test_completion_scripts_generate(shell: str, marker: str, tmp_path: Path) -> None:
    env = dict(os.environ, _OVSFLOW_COMPLETE=f"{shell}_source")
    proc = subprocess.run([str(OVSFLOW)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and "_OVSFLOW_COMPLETE" in proc.stdout
    script = tmp_path / f"ovsflow.{shell}"
    script.write_text(proc.stdout)
    if shell == "bash":  # it parses, and the completion it calls answers
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
        env = dict(os.environ, _OVSFLOW_COMPLETE="bash_complete", COMP_WORDS="ovsflow lab u", COMP_CWORD="2")
        done = subprocess.run([str(OVSFLOW)], capture_output=True, text=True, env=env)
        assert done.returncode == 0 and done.stdout.split() == ["plain,up"], done.stdout


def test_colour_only_on_a_terminal() -> None:
    # not a terminal (a pipe): no escape sequences
    proc = subprocess.run([str(OVSFLOW), "validate", TOPOLOGY], capture_output=True, text=True)
    assert proc.returncode == 0 and ": ok (" in proc.stdout and "\x1b" not in proc.stdout
    # a terminal (click's test runner pretending one): green
    assert "\x1b[32mok\x1b[0m" in CliRunner().invoke(main, ["validate", TOPOLOGY], color=True).output
    # NO_COLOR: none even there
    plain = CliRunner().invoke(main, ["validate", TOPOLOGY], color=True, env={"NO_COLOR": "1"}).output
    assert "\x1b" not in plain and ": ok (" in plain


def test_exit_codes_are_the_readme_ones(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Exit codes" in readme
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "labs" / "03-seed003" / "topology.yaml").read_text().replace("vni: 101", "vni: 0"))
    assert subprocess.run([str(OVSFLOW), "validate", TOPOLOGY], capture_output=True).returncode == 0
    assert subprocess.run([str(OVSFLOW), "validate", str(bad)], capture_output=True).returncode == 2
    assert subprocess.run([str(OVSFLOW), "render", TOPOLOGY], capture_output=True).returncode == 2  # no --host
