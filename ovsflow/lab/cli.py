"""`ovsflow lab ...`: click commands (the group is registered in ovsflow/cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from . import lab as labmod
from .state import LabState

NAME_HELP = "lab name: prefix of every namespace it creates (env OVSFLOW_LAB_NAME, default 'ofl')"


def _name_option(f):
    return click.option("--name", default=lambda: os.environ.get("OVSFLOW_LAB_NAME", labmod.DEFAULT_NAME),
                        show_default="ofl", help=NAME_HELP)(f)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise click.ClickException("the lab needs root (network namespaces, OVS daemons)")


def _load_topology(path: str):
    from ovsflow.model import TopologyError, load_topology

    try:
        return load_topology(path)
    except TopologyError as e:
        click.echo(str(e), err=True)
        sys.exit(2)


def _state(name: str) -> LabState:
    state = labmod.load_state(name)
    if state is None:
        raise click.ClickException(f"no lab named {name!r} is up (see `ovsflow lab up TOPOLOGY`)")
    return state


@click.group("lab")
def lab() -> None:
    """A topology brought to life on this machine: one namespace + private OVS per host, one per VM."""


@lab.command("up")
@click.argument("topology")  # read (and refused in one line) by the loader, like every other command
@_name_option
@click.option("--program", type=click.Choice(["render", "none"]), default="render", show_default=True,
              help="program br-int/br-tun by running ovsflow's rendered script, or leave them to a controller")
@click.option("--controller", "with_controller", is_flag=True,
              help="run the live controller (ryu-manager ovsflow.app) on the lab's underlay, make it every bridge's "
                   "controller through OVSDB, and return once every switch is in sync; `lab down` stops it")
@click.option("--controller-port", type=int, default=6653, show_default=True, help="its OpenFlow port")
@click.option("--metrics-port", type=int, default=None, help="with --controller: serve its Prometheus metrics on this port "
              "(bound to the controller's lab address)")
def up_cmd(topology: str, name: str, program: str, with_controller: bool, controller_port: int,
           metrics_port: int | None) -> None:
    """Build the lab for TOPOLOGY (replacing a previous lab of the same name).

    \b
    Examples:
      ovsflow lab up labs/03-seed003/topology.yaml
      ovsflow lab up labs/06-migration/topology.yaml --controller   # the live controller programs it
    """
    _need_root()
    topo = _load_topology(topology)
    try:
        if with_controller:
            from .controller import up_with_controller

            state = up_with_controller(Path(topo.source), name, port=controller_port, metrics_port=metrics_port, log=click.echo)
        else:
            state = labmod.up(topo, name, program=program, log=click.echo)
    except Exception as e:  # leave nothing half-built behind
        click.echo(f"lab up failed: {e}", err=True)
        labmod.down(name, log=click.echo)
        sys.exit(1)
    click.echo(summary(state))


def summary(state: LabState) -> str:
    lines = [f"lab {state.name} is up in {state.timings.get('up_s', 0):.1f}s "
             f"({len(state.hosts)} hosts, {len(state.vms)} VMs); state and logs in {state.workdir}"]
    for host, h in state.hosts.items():
        lines.append(f"  host {host:8} VTEP {h['vtep']:15} netns {h['netns']:16} OVS: OVS_RUNDIR={h['ovs_dir']}")
    if state.underlay.get("controller"):
        lines.append(f"  controller ryu-manager ovsflow.app on {state.underlay['controller']} (pid {state.underlay['controller_pid']}, "
                     f"netns {state.underlay['netns']}); log {state.underlay['controller_log']}")
    for port, v in sorted(state.vms.items()):
        lines.append(f"  vm   {port:8} {v['ip'] or '-':15} {v['mac']}  {v['network']:8} on {v['host']} (netns {v['netns']})")
    first = sorted(state.vms)[0] if state.vms else "VM"
    host = next(iter(state.hosts), "HOST")
    n = "" if state.name == labmod.DEFAULT_NAME else f" --name {state.name}"
    lines += [
        "try:",
        f"  ovsflow lab exec{n} {first} -- ping -c 3 <ip>      # run a command in a VM",
        f"  ovsflow lab exec{n} {host} -- ovs-ofctl -O OpenFlow14 dump-flows br-tun   # a host's OVS",
        f"  ovsflow lab capture{n} -c 20                       # VXLAN vni / GRE key on the underlay",
        f"  ovsflow lab check{n}                               # the connectivity matrix",
        f"  ovsflow lab down{n}",
    ]
    return "\n".join(lines)


@lab.command("down")
@click.argument("topology", required=False)
@_name_option
def down_cmd(topology: str | None, name: str) -> None:
    """Remove everything the lab created (idempotent; works after a crash)."""
    _need_root()
    t = time.monotonic()
    state = labmod.load_state(name)
    if state is not None:
        from .controller import stop_controller

        if stop_controller(state):
            click.echo(f"lab {name}: controller stopped")
    if labmod.down(name, log=click.echo):
        click.echo(f"lab {name} is down ({time.monotonic() - t:.1f}s)")
    else:
        click.echo(f"lab {name}: nothing to remove")


@lab.command("status")
@click.argument("topology", required=False)
@_name_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status_cmd(topology: str | None, name: str, as_json: bool) -> None:
    """Show what the lab created and whether it is alive."""
    st = labmod.status(name)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    if st["status"] == "absent":
        click.echo(f"lab {name}: not up")
        return
    click.echo(f"lab {name}: {st['status']} ({st['topology']}), state in {st['workdir']}")
    for host, h in st["hosts"].items():
        alive = "running" if h["ovs_running"] else "OVS NOT RUNNING"
        click.echo(f"  host {host:8} {h.get('vtep', ''):15} netns {h['netns']:16} {alive}")
    ul = st.get("underlay", {})
    if ul.get("controller"):
        from .controller import _is_app

        running = "running" if _is_app(int(ul.get("controller_pid", 0) or 0)) else "CONTROLLER NOT RUNNING"
        click.echo(f"  controller {ul['controller']} pid {ul.get('controller_pid')} {running}; log {ul.get('controller_log')}")
    for port, v in sorted(st["vms"].items()):
        alive = "" if v["netns_alive"] else "  NETNS MISSING"
        click.echo(f"  vm   {port:8} {v['ip'] or '-':15} {v['mac']} {v['network']} on {v['host']}{alive}")
    if st["timings"]:
        click.echo("  timings: " + ", ".join(f"{k}={v}" for k, v in st["timings"].items()))


@lab.command("check")
@click.argument("topology", required=False)
@_name_option
def check_cmd(topology: str | None, name: str) -> None:
    """Connectivity matrix: same network must reach, different networks must not. Exit 1 on violation."""
    from .check import format_matrix, run_check

    _need_root()
    state = _state(name)
    if topology:
        _check_same_topology(state, topology)
    result = run_check(state)
    click.echo(format_matrix(result, state.vms))
    sys.exit(0 if result.ok else 1)


def _check_same_topology(state: LabState, topology: str) -> None:
    from pathlib import Path

    if Path(topology).resolve() != Path(state.topology):
        raise click.ClickException(f"lab {state.name} runs {state.topology}, not {topology}")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@_name_option
@click.argument("target")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(name: str, target: str, cmd: tuple[str, ...]) -> None:
    """Run CMD in the namespace of TARGET (a VM port or a host; for a host, plain ovs-vsctl/ofctl/appctl
    reach its private OVS). Example: ovsflow lab exec vm1 -- ping -c 3 198.51.100.2"""
    _need_root()
    state = _state(name)
    env = dict(os.environ)
    if target in state.vms:
        netns = state.vms[target]["netns"]
    elif target in state.hosts:
        netns = state.hosts[target]["netns"]
        d = state.hosts[target]["ovs_dir"]
        env.update({"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d})
    elif target == "underlay":
        netns = state.underlay["netns"]
    else:
        raise click.ClickException(f"no VM or host {target!r} in lab {name} "
                                   f"(VMs: {', '.join(sorted(state.vms))}; hosts: {', '.join(state.hosts)})")
    sys.exit(subprocess.call(["ip", "netns", "exec", netns, *cmd], env=env))


@lab.command("capture")
@_name_option
@click.option("--host", "host", default=None, help="only this host's underlay link (default: all, each frame once)")
@click.option("-c", "--count", type=int, default=None, help="stop after N packets")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("-w", "--write", "write", default=None, help="write a pcap file instead of printing")
@click.option("--all", "all_traffic", is_flag=True, help="everything, not only tunnel packets")
@click.argument("pcap_filter", nargs=-1)
def capture_cmd(name: str, host: str | None, count: int | None, duration: float | None, write: str | None,
                all_traffic: bool, pcap_filter: tuple[str, ...]) -> None:
    """tcpdump on the underlay: see `VXLAN ... vni N` (UDP 4789), `GREv0 ... key=0x..`, Geneve (6081)."""
    _need_root()
    state = _state(name)
    from .capture import capture_command

    try:
        cmd = capture_command(state, host=host, count=count, write=write, all_traffic=all_traffic,
                              pcap_filter=" ".join(pcap_filter))
    except KeyError as e:
        raise click.ClickException(str(e.args[0])) from None
    try:
        proc = subprocess.Popen(cmd)
        proc.wait(timeout=duration)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
    except KeyboardInterrupt:
        proc.wait()
    sys.exit(0)


if __name__ == "__main__":
    lab()
