"""The `ovsflow trace` command (registered from cli.py): options in, one-line errors out (exit 2),
the trace as text or JSON; `--live` beside ofproto/trace (exit 1 on disagreement), `--svg`."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from .cli_io import EXIT_INVALID, load_or_exit
from .cli_io import fail as cli_fail
from .evaluator import EvaluationError
from .trace import Request, TraceError, Tracer
from .trace_format import to_json, to_text


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    cli_fail("ovsflow trace", message, code)


load = load_or_exit


def _l4(option: str, text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        fail(f"{option}: a port number 0-65535 ({text})")
    return int(text)


def build_request(src: str, to: str | None, dst_ip: str | None, dst_mac: str | None, arp: bool, icmp: bool,
                  tcp: str | None, udp: str | None, fields: tuple[str, ...], learned: bool) -> Request:
    kinds = [k for k, on in (("arp", arp), ("icmp", icmp), ("tcp", tcp is not None), ("udp", udp is not None)) if on]
    if len(kinds) > 1:
        fail(f"--{kinds[1]}: one of --arp, --icmp, --tcp N, --udp N ({' '.join('--' + k for k in kinds)})")
    kind = kinds[0] if kinds else "icmp"
    l4 = _l4("--tcp", tcp) if tcp is not None else _l4("--udp", udp) if udp is not None else None
    pairs = []
    for f in fields:
        name, sep, value = f.partition("=")
        if not sep or not name.strip():
            fail(f"--field: not name=value ({f})")
        pairs.append((name.strip(), value))
    return Request(src, to, dst_ip, dst_mac, kind, l4, tuple(pairs), learned)


@click.command("trace")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--from", "src", required=True, metavar="PORT", help="The sending port (a VM port of the topology).")
@click.option("--to", metavar="PORT", help="Destination port: same network, or another network of the same router (routed).")
@click.option("--dst-ip", metavar="IP", help="Destination IPv4 address (a port's, or the gateway's).")
@click.option("--dst-mac", metavar="MAC", help="Destination MAC (any: unknown MACs flood or drop as the program says).")
@click.option("--arp", is_flag=True, help="An ARP request for the destination (or for the gateway, when routed).")
@click.option("--icmp", is_flag=True, help="An ICMP echo request (the default).")
@click.option("--tcp", metavar="N", help="A TCP segment to port N.")
@click.option("--udp", metavar="N", help="A UDP datagram to port N.")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE",
              help="Set any registry field of the frame last (e.g. nw_ttl=1, dl_src=02:..., tp_src=53).")
@click.option("--learned", is_flag=True, help="First let learn() see the exchange (ARP and the reply).")
@click.option("--json", "as_json", is_flag=True, help="The trace as JSON (format ovsflow-trace/1).")
@click.option("--svg", "svg", metavar="FILE", help="Also draw the path on the topology (Graphviz): .svg or .png.")
@click.option("--live", is_flag=True, help="Also run the frame through ovs-appctl ofproto/trace on each hop "
              "and flag any disagreement (exit 1).")
@click.option("--lab", "lab", metavar="NAME", help="With --live: the lab whose switches to ask "
              "(default: the local OVS, OVS_RUNDIR, for hosts it has).")
def trace(topology: str, src: str, to: str | None, dst_ip: str | None, dst_mac: str | None, arp: bool, icmp: bool,
          tcp: str | None, udp: str | None, fields: tuple[str, ...], learned: bool, as_json: bool, svg: str | None,
          live: bool, lab: str | None) -> None:
    """Where a frame from PORT goes, hop by hop: every bridge, table and flow of every host it
    visits, the tunnels between them, and where it ends (delivered or dropped, by which flow)."""
    req = build_request(src, to, dst_ip, dst_mac, arp, icmp, tcp, udp, fields, learned)
    if lab and not live:
        fail(f"--lab: only with --live ({lab})")
    topo = load(topology)
    tracer = Tracer(topo)
    try:
        result = tracer.run(req)
    except TraceError as exc:
        fail(str(exc))
    except EvaluationError as exc:
        fail(f"the program cannot be evaluated: {str(exc).splitlines()[0]}", 1)
    agree = True
    if live:
        from .trace_live import compare_live, live_text

        try:
            report = compare_live(tracer, req, result, lab)
        except (RuntimeError, OSError) as exc:
            fail(f"--live: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", 1)
        agree = report.agree
    if as_json:
        doc = to_json(result)
        if live:
            doc["live"] = report.to_json()
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(to_text(result), nl=False)
        if live:
            click.echo(live_text(report), nl=False)
    if svg:
        from .graphviz_draw import DrawError, draw_trace

        try:
            draw_trace(topo, result, svg)
        except DrawError as exc:
            fail(str(exc))
    sys.exit(0 if agree else 1)


def register(main: click.Group) -> None:
    """The commands of trace and pictures, added to `main` from one line of cli.py: `trace`,
    `graph`, and `--graph` on `pipeline`."""
    from .graphviz_cli import extend_pipeline, graph

    main.add_command(trace)
    main.add_command(graph)
    extend_pipeline(main.commands["pipeline"])
