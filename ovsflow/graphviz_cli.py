"""`ovsflow graph TOPOLOGY -o FILE` and `ovsflow pipeline --graph -o FILE`: pictures with Graphviz.
Failures (a bad suffix, no dot, dot's own errors, an unwritable file) are one line, exit 2."""

from __future__ import annotations

import sys
from typing import Any

import click

from .problems import escape
from .trace_cli import load


def _fail(command: str, message: str) -> None:
    click.echo(f"ovsflow {command}: {escape(message)}", err=True)
    sys.exit(2)


@click.command("graph")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, metavar="FILE", help="The picture: FILE.svg or FILE.png.")
def graph(topology: str, output: str) -> None:
    """Draw TOPOLOGY: hosts (VTEPs), VMs, the tunnel mesh of each network, routers."""
    from .graphviz_draw import DrawError, render, topology_graph

    topo = load(topology)
    try:
        out = render(topology_graph(topo, topology), output)
    except DrawError as exc:
        _fail("graph", str(exc))
    click.echo(f"wrote {escape(str(out))}")


def extend_pipeline(pipeline: click.Command) -> None:
    """Give cli.py's `pipeline` command `--graph -o FILE` (the picture instead of the listing),
    leaving its own code and options as they are."""
    listing = pipeline.callback
    pipeline.params += [
        click.Option(["--graph"], is_flag=True, help="Draw the tables and their gotos (Graphviz) into -o FILE."),
        click.Option(["-o", "--output"], metavar="FILE", help="With --graph: FILE.svg or FILE.png."),
    ]

    def callback(graph: bool, output: str | None, **kwargs: Any) -> None:
        if not graph:
            if output:
                _fail("pipeline", f"-o is for --graph ({output})")
            assert listing is not None
            listing(**kwargs)
            return
        from .graphviz_draw import DrawError, pipeline_graph, render

        if not output:
            _fail("pipeline", "--graph needs -o FILE.svg or FILE.png")
        try:
            out = render(pipeline_graph(), output)  # type: ignore[arg-type]
        except DrawError as exc:
            _fail("pipeline", str(exc))
        click.echo(f"wrote {escape(str(out))}")

    pipeline.callback = callback
