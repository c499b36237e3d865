"""The `ovsflow` command. Every user error is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from . import __version__
from .cli_io import EXIT_INVALID, fail, load_or_exit
from .problems import escape

_load = load_or_exit


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    fail("ovsflow", message, code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ovsflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Compute and program the OpenFlow pipeline of Open vSwitch VTEPs from a topology file.

    Colour only on a terminal (NO_COLOR=1 turns it off there too). Exit codes: 0 ok, 1 a check
    failed or applying failed, 2 invalid input (one line per problem).
    """
    if os.environ.get("NO_COLOR"):
        ctx.color = False


def ok_text(text: str, ok: bool = True) -> str:
    """`text` in green (red if not ok): click.echo drops the colour when not writing to a terminal."""
    return click.style(text, fg="green" if ok else "red", bold=None if ok else True)


@main.command()
@click.argument("topology")
def validate(topology: str) -> None:
    """Check TOPOLOGY (YAML or JSON) against the schema and the semantic rules."""
    topo = _load(topology)
    click.echo(f"{escape(topology)}: {ok_text('ok')} ({len(topo.hosts)} hosts, {len(topo.networks)} networks, {len(topo.ports)} ports)")


@main.command()
@click.argument("topology")
@click.option("--host", "host", metavar="NAME", help="The host (hypervisor) to render.")
@click.option("--all-hosts", is_flag=True, help="Render every host (needs --output-dir).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Write one file per host here.")
@click.option("--dry-run", is_flag=True, help="Print the script instead of applying it to the local OVS "
              "(--output-dir and --format flows never apply).")
@click.option("--format", "fmt", type=click.Choice(["script", "flows"]), default="script", show_default=True,
              help="script: the complete idempotent sh script; flows: the bare ovs-ofctl flow file.")
@click.option("--bridge", type=click.Choice(["int", "tun", "both"]), default="both", show_default=True,
              help="With --format flows: which bridge's flows.")
@click.option("--datapath-type", type=click.Choice(["system", "netdev"]), default=None,
              help="Override the hosts' datapath_type (netdev = userspace datapath).")
@click.option("--memory-from-switch", is_flag=True,
              help="Number as the local OVS remembers (br-int external_ids:ovsflow-allocation) also when "
                   "not applying; applying always does. Without it --dry-run depends on its inputs only.")
def render(topology: str, host: str | None, all_hosts: bool, output_dir: str | None, dry_run: bool, fmt: str,
           bridge: str, datapath_type: str | None, memory_from_switch: bool) -> None:
    """Render the OpenFlow program of a host as a script (or flow file), or apply it."""
    from .graph import TopologyGraph
    from .render import render_flows, render_script, switch_allocation

    if bool(host) == all_hosts:
        _fail("give exactly one of --host NAME or --all-hosts")
    if all_hosts and not output_dir:
        _fail("--all-hosts writes one file per host: give --output-dir DIR")
    if all_hosts and memory_from_switch:
        _fail("--memory-from-switch reads the local OVS, which is one host's: give --host NAME")
    topo = _load(topology)
    if host and host not in topo.hosts:
        _fail(f"{topology}: hosts.{host}: no such host (known: {', '.join(sorted(topo.hosts)) or 'none'})")
    roles = ("int", "tun") if bridge == "both" else (bridge,)
    applying = not (dry_run or fmt == "flows" or output_dir)
    memory = None
    if host and (applying or memory_from_switch):
        # The numbers the switch carries: kept for everything that still exists (graph.allocate).
        allocation, why = switch_allocation(topo.hosts[host].bridge_int)
        if why:
            click.echo(f"ovsflow: warning: {escape(why)}; numbering afresh", err=True)
        memory = {host: allocation} if allocation is not None else None
    graph = TopologyGraph(topo, focus=None if all_hosts else host, memory=memory)

    def one(name: str) -> str:
        if fmt == "flows":
            return render_flows(topo, name, roles, graph)
        return render_script(topo, name, datapath_type, graph)

    if output_dir:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in [host] if host else sorted(topo.hosts):
            suffix = ".sh" if fmt == "script" else ".flows"
            target = out / f"{name}{suffix}"
            target.write_text(one(name))
            if fmt == "script":
                target.chmod(0o755)
        click.echo(f"wrote {len(topo.hosts) if all_hosts else 1} file(s) to {escape(str(out))}")
        return
    text = one(host)  # type: ignore[arg-type]
    if dry_run or fmt == "flows":
        click.echo(text, nl=False)
        return
    # Apply: the very same script, run by sh against the local OVS (OVS_RUNDIR is honoured).
    proc = subprocess.run(["sh", "-s"], input=text, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        _fail(f"applying the program of host {host} failed (exit {proc.returncode}); see the messages above", 1)


@main.command()
@click.option("--bridge", type=click.Choice(["int", "tun", "both"]), default="both", show_default=True)
def pipeline(bridge: str) -> None:
    """Print the declared pipeline (pipelines/*.yaml): tables, what they match, where they go."""
    import textwrap

    from .pipeline import load_pipeline

    for role in ("int", "tun") if bridge == "both" else (bridge,):
        p = load_pipeline(role)
        click.echo(f"br-{role}: {p.description}")
        for t in sorted(p.tables.values(), key=lambda t: t.id):
            miss = "drop" if t.miss_goto is None else f"goto {t.miss_goto}"
            nxt = ", ".join(map(str, t.next)) or "-"
            click.echo(f"  {t.id:>3} {t.name:<14} next: {nxt:<12} miss: {miss:<8} match: {', '.join(sorted(t.match)) or '-'}")
            click.echo(textwrap.fill(t.purpose, 100, initial_indent=" " * 8, subsequent_indent=" " * 8))
        click.echo("")


@main.command("ovsdb-ensure")
@click.argument("topology")
@click.option("--host", "host", required=True, metavar="NAME", help="The host whose bridges and ports to ensure.")
@click.option("--db", "remote", default=None, metavar="REMOTE",
              help="OVSDB to talk to: unix:PATH or tcp:IP:PORT (default: the host's `ovsdb` in the "
                   "topology, else unix:$OVS_RUNDIR/db.sock).")
@click.option("--controller", default=None, metavar="TARGET", help="OpenFlow controller target, e.g. tcp:127.0.0.1:6653.")
@click.option("--probe-ms", type=int, default=None, help="Controller inactivity probe (ms).")
@click.option("--datapath-type", type=click.Choice(["system", "netdev"]), default=None)
def ovsdb_ensure(topology: str, host: str, remote: str | None, controller: str | None, probe_ms: int | None,
                 datapath_type: str | None) -> None:
    """Make a host's OVSDB hold its bridges and ports (fail_mode secure, protocols, datapath ids,
    patch and tunnel ports, controller) in one transaction through the OVSDB protocol; flows are
    left to the controller or to `render`. Prints what changed; nothing when all is in place."""
    import warnings

    with warnings.catch_warnings():  # python-ovs imports eventlet (installed for Ryu), which warns
        warnings.simplefilter("ignore")
        from .ovsdb import OvsdbError, ensure_from_topology

    topo = _load(topology)
    if host not in topo.hosts:
        _fail(f"{topology}: hosts.{host}: no such host (known: {', '.join(sorted(topo.hosts)) or 'none'})")
    rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
    remote = remote or topo.hosts[host].ovsdb or f"unix:{rundir}/db.sock"
    try:
        changes = ensure_from_topology(topology, host, remote, controller or topo.controller,
                                       probe_ms if probe_ms is not None else topo.inactivity_probe_ms, datapath_type)
    except (OvsdbError, OSError) as exc:
        _fail(f"{remote}: {exc}", 1)
    for line in changes.lines:
        click.echo(line)
    for bridge in changes.flows_cleared:
        click.echo(f"ovsflow: warning: OVS clears the flows of {bridge} for this change (controller or fail_mode)", err=True)
    click.echo(f"{host}: {len(changes.lines)} change(s)")


DEFAULT_LAB = Path(__file__).resolve().parent.parent / "labs" / "03-seed003" / "topology.yaml"


@main.command()
@click.argument("topology", required=False)
@click.option("--keep", is_flag=True, help="Leave the lab up to explore (remove it later with `ovsflow lab down`).")
@click.option("--name", default="ofdemo", show_default=True, help="Lab name: prefix of every namespace it creates.")
@click.option("--render", "use_render", is_flag=True,
              help="Program the lab with the rendered scripts (`ovsflow render`) instead of the live controller.")
def demo(topology: str | None, keep: bool, name: str, use_render: bool) -> None:
    """The main job on the built-in default: bring up a lab (seed 003: three hypervisors, two
    tenants, VXLAN and GRE), have the live controller (`ryu-manager ovsflow.app`) program it
    through OpenFlow bundles and show what it did per switch, prove the connectivity matrix, show
    what learn() put in br-tun's unicast table, and tear it all down. Exit 0 only if every check
    passed.

    \b
    Examples:
      ovsflow demo                       # the live controller programs the default lab
      ovsflow demo --render              # the same lab programmed by the rendered scripts
      ovsflow demo labs/06-migration/topology.yaml --keep
    """
    from .compiler import LEARN_TABLE
    from .lab import lab as labmod
    from .lab.check import format_matrix, run_check
    from .program import COOKIE_LEARNED

    if os.geteuid() != 0:
        _fail("the lab needs root (network namespaces and Open vSwitch)")
    path = topology or str(DEFAULT_LAB)
    topo = _load(path)
    ok = False
    state = None
    try:
        how = "rendered scripts" if use_render else "the live controller"
        t_up = time.monotonic()
        click.echo(f"== ovsflow demo: {path} (programmed by {how})")
        if use_render:
            state = labmod.up(topo, name, log=click.echo)
        else:
            from .lab.controller import app_report, up_with_controller

            state = up_with_controller(Path(path), name, log=click.echo)
            report = app_report(Path(state.underlay["controller_log"]).read_text(errors="replace"))
            click.echo(f"== what ryu-manager ovsflow.app did, per switch ({len(report)} reconciles; one bundle each):")
            for line in report:
                click.echo(f"   {line}")
        click.echo(f"== lab up and programmed in {time.monotonic() - t_up:.1f} s; "
                   "connectivity matrix (same network must reach, others must not):")
        result = run_check(state)
        click.echo(format_matrix(result, state.vms))
        first = sorted(topo.hosts)[0]
        ovs = labmod.host_ovs(state, first)
        tun = topo.hosts[first].bridge_tun
        table = LEARN_TABLE
        learned = [ln for ln in ovs.dump_flows(tun, f"table={table}") if f"cookie={COOKIE_LEARNED:#x}" in ln]
        click.echo(f"== {first} {tun} table {table} after the check: {len(learned)} MAC entries learned by learn()")
        for line in learned[:6]:
            click.echo(f"   {line}")
        ok = result.ok and bool(learned)
        click.echo("== demo " + ok_text("passed" if ok else "FAILED", ok))
    finally:
        if keep:
            click.echo(f"lab {name} left up: `ovsflow lab status --name {name}`, `ovsflow lab down --name {name}`")
        else:
            if state is not None:
                from .lab.controller import stop_controller

                stop_controller(state)
            labmod.down(name, log=click.echo)
    sys.exit(0 if ok else 1)


from .lab.cli import lab  # noqa: E402 - the lab's command group lives with the lab

main.add_command(lab)
from .trace_cli import register as register_trace  # noqa: E402 - trace, graph, pipeline --graph: own modules

register_trace(main)
from .verify.cli import verify_command  # noqa: E402 - `ovsflow verify` lives in its own package

main.add_command(verify_command)


# One example per command, shown at the end of its --help (commands whose help already has its own
# "Example" keep theirs). Every command is listed: tests/test_cli_finish.py checks each --help.
EXAMPLES: dict[str, list[str]] = {
    "ovsflow": ["ovsflow validate labs/03-seed003/topology.yaml",
                "ovsflow render labs/03-seed003/topology.yaml --host hv1 --dry-run",
                "ovsflow demo"],
    "validate": ["ovsflow validate labs/03-seed003/topology.yaml"],
    "render": ["ovsflow render labs/03-seed003/topology.yaml --host hv1 --dry-run",
               "ovsflow render labs/03-seed003/topology.yaml --all-hosts --output-dir out/",
               "ssh hv1 sudo sh -s < out/hv1.sh        # a host without the controller"],
    "pipeline": ["ovsflow pipeline --bridge tun", "ovsflow pipeline --graph -o pipeline.svg"],
    "ovsdb-ensure": ["ovsflow ovsdb-ensure topology.yaml --host hv1 --controller tcp:10.0.0.1:6653"],
    "trace": ["ovsflow trace labs/03-seed003/topology.yaml --from vm1 --to vm2",
              "ovsflow trace labs/03-seed003/topology.yaml --from vm1 --dst-ip 198.51.100.3 --arp"],
    "graph": ["ovsflow graph labs/03-seed003/topology.yaml -o topology.svg"],
    "verify": ["ovsflow verify labs/03-seed003/topology.yaml",
               "ovsflow verify labs/03-seed003/topology.yaml --live     # against a running lab's switches"],
    "lab": ["ovsflow lab up labs/03-seed003/topology.yaml --controller",
            "ovsflow lab check", "ovsflow lab down"],
    "lab down": ["ovsflow lab down --name ofl"],
    "lab status": ["ovsflow lab status --json"],
    "lab check": ["ovsflow lab check labs/03-seed003/topology.yaml"],
    "lab capture": ["ovsflow lab capture --host hv1 -c 20", "ovsflow lab capture -w underlay.pcap --duration 10"],
}


def _add_examples(group: click.Group, prefix: str = "") -> None:
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        lines = EXAMPLES.get(path)
        if lines and "Example" not in (cmd.help or ""):
            title = "Example" if len(lines) == 1 else "Examples"
            cmd.help = inspect.cleandoc(cmd.help or "") + f"\n\n\b\n{title}:\n" + "\n".join(f"  {ln}" for ln in lines)
        if isinstance(cmd, click.Group):
            _add_examples(cmd, path + " ")


_add_examples(main)
if main.help and "Example" not in main.help:
    main.help = inspect.cleandoc(main.help) + "\n\n\b\nExamples:\n" + "\n".join(f"  {ln}" for ln in EXAMPLES["ovsflow"]) + (
        "\n\n\b\nShell completion (bash; zsh: zsh_source):\n  eval \"$(_OVSFLOW_COMPLETE=bash_source ovsflow)\"")


if __name__ == "__main__":  # pragma: no cover
    main()
