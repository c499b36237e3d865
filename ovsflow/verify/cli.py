"""`ovsflow verify TOPOLOGY [--live ...]`: exit 0 verified / no drift, 1 violation or drift, 2 bad input."""

from __future__ import annotations

import os
import sys

import click

from ..cli_io import EXIT_VIOLATION, fail, load_or_exit
from ..fields import FIELDS, format_value
from ..model import Topology
from ..problems import escape

_load = load_or_exit


def _values(values: dict[str, int]) -> str:
    def show(k: str, v: int) -> str:
        if k == "vlan_tci":
            return f"vlan={v & 0xFFF}" if v & 0x1000 else "untagged"
        return f"{k}={format_value(FIELDS[k].kind, v)}"
    return ",".join(show(k, v) for k, v in sorted(values.items()))


@click.command("verify")
@click.argument("topology")
@click.option("--live", is_flag=True, help="Compare the switches' ovsflow flows and groups with the program instead.")
@click.option("--lab", "lab", metavar="NAME", help="With --live: the lab whose switches to read (ovsflow lab up --name).")
@click.option("--host", "host", metavar="NAME", help="With --live outside a lab: the host whose program the local OVS "
              "(OVS_RUNDIR) should hold.")
@click.option("--jobs", "jobs", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Hosts verified in N processes at once (default: the CPUs available).")
@click.option("--max-shown", default=20, show_default=True, help="Violations printed in full (with their trace).")
def verify_command(topology: str, live: bool, lab: str | None, host: str | None, jobs: int | None,
                   max_shown: int) -> None:
    """Prove TOPOLOGY's compiled programs isolate networks, reach every port, loop nowhere and
    flood exactly; or, with --live, that the switches hold exactly that program."""
    if (lab or host) and not live:
        fail("ovsflow verify", f"{'--lab' if lab else '--host'}: only with --live")
    topo = _load(topology)
    if live:
        _live(topology, topo, lab, host)
    from .run import verify

    res = verify(topo, workers=jobs or len(os.sched_getaffinity(0)))
    if res.ok:
        click.echo(f"{escape(topology)}: verified: {res.hosts} hosts, {res.flows} flows, {res.classes} header classes "
                   f"explored, {res.exits} exits checked in {res.seconds:.2f} s")
        return
    click.echo(f"{escape(topology)}: {len(res.violations)} violation(s) ({res.hosts} hosts, {res.flows} flows, "
               f"{res.classes} header classes, {res.seconds:.2f} s)")
    for i, v in enumerate(res.violations[:max_shown]):
        click.echo(f"\n[{v.kind}] {escape(v.host)}: {escape(v.message)}")
        if v.frame is not None and v.entry is not None:
            click.echo(f"  counterexample: {v.entry[0]} port {v.entry[1]}: {_values(v.frame)}")
        if i < len(res.traces) and res.traces[i]:
            click.echo("  " + escape(res.traces[i]).replace("\\n", "\n  "))
    if len(res.violations) > max_shown:
        click.echo(f"\n... {len(res.violations) - max_shown} more")
    sys.exit(EXIT_VIOLATION)


def _live(path: str, topo: Topology, lab: str | None, host: str | None) -> None:
    """Compare the switches with the program; exits 0 (no drift), 1 (drift) or 2 (cannot read)."""
    from .live import LiveError, compare_hosts, find_switches, live_text

    try:
        drifts = compare_hosts(topo, find_switches(topo, lab, host))
    except LiveError as exc:
        fail("ovsflow verify --live", str(exc))
    for line in live_text(drifts).splitlines():
        click.echo(escape(line))
    bad = [d for d in drifts if d.drift]
    hosts = len({d.host for d in drifts})
    if bad:
        click.echo(f"{escape(path)}: live: DRIFT on {len(bad)} of {len(drifts)} bridges ({hosts} hosts)")
        sys.exit(EXIT_VIOLATION)
    click.echo(f"{escape(path)}: live: no drift: {hosts} hosts, {len(drifts)} bridges, "
               f"{sum(d.flows for d in drifts)} flows, {sum(d.groups for d in drifts)} groups")
    sys.exit(0)
