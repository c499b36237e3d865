"""What every command does with a topology file and with a fatal error: one line each on stderr,
control characters escaped, and the exit codes the README lists (2 bad input, 1 a failed check)."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from .model import Topology, TopologyError, load_topology
from .problems import escape

EXIT_VIOLATION, EXIT_INVALID = 1, 2


def load_or_exit(path: str) -> Topology:
    """The validated topology, or its problems (one line each) and exit 2."""
    try:
        return load_topology(path)
    except TopologyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_INVALID)


def fail(command: str, message: str, code: int = EXIT_INVALID) -> NoReturn:
    """`command: message` on stderr; names in `message` may come from the command line or the file."""
    click.echo(f"{command}: {escape(message)}", err=True)
    sys.exit(code)
