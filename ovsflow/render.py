"""`ovsflow render`: a host's program as one idempotent POSIX sh script an operator can read and run.

The script (1) creates or updates the bridges and ports in one ovs-vsctl transaction per bridge, with
fail_mode and protocols set in the same transaction that creates the bridge (toggling them later
clears the bridge's flows), (2) removes ports ovsflow made earlier that the topology no longer has, and
(3) loads each bridge's flows with `ovs-ofctl --bundle replace-flows` (one atomic transaction). Flows
that are not ovsflow's static program (learned MACs, other tools' flows) are read back from the switch
and kept, so running the script again changes nothing and flushes nothing.

It uses plain `ovs-vsctl`/`ovs-ofctl BRIDGE`, so `OVS_RUNDIR=/dir sh script` targets a private OVS.

The script also records the host's allocation (local VLANs, VM and tunnel ofports) in br-int's
`external_ids:ovsflow-allocation`; `ovsflow render` (applying) reads it back first and compiles
with it, so an edit never renumbers what the switch already carries (graph.allocate).

Nothing from the input reaches the script unquoted: names the schema limits to safe characters are
checked again here (`word`) before they appear bare, other values go through `shlex.quote`, and
text in comments (the file's name, port names, MACs) has line breaks and control characters escaped,
so it cannot end the comment's line.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from . import __version__
from .allocation import EXTERNAL_ID, Allocation
from .compiler import compile_host
from .graph import TopologyGraph
from .model import Topology, gc_paused
from .ofctl import STATIC_COOKIE_TEXT, flow_lines
from .problems import escape
from .program import OPENFLOW_VERSIONS, BridgeProgram, HostProgram, flow_table_settings

PROTOCOLS = ",".join(OPENFLOW_VERSIONS)
OWNER_KEY = "ovsflow-bridge"  # Interface external_ids key marking ports ovsflow created


def q(value: str) -> str:
    return shlex.quote(value)


_WORD = re.compile(r"[A-Za-z0-9_.:-]+")


def word(value: object) -> str:
    """A name that appears bare in a command line: only characters no shell treats specially."""
    text = str(value)
    if not _WORD.fullmatch(text):
        raise ValueError(f"refusing to put {escape(text)!r} unquoted in a shell script")
    return text


def c(value: object) -> str:
    """Text for a comment: one line whatever it holds."""
    return escape(str(value))


def _ovsdb_map(pairs: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs) + "}"


_ALLOCATION_TEXT = re.compile(r"[A-Za-z0-9_.:,;=-]*")


def allocation_setting(allocation: Allocation) -> str:
    """`external_ids:ovsflow-allocation="..."`, quoted for the shell (the text holds only names,
    digits and `:,;=`, checked again here; the double quotes make it one OVSDB string)."""
    text = allocation.encode()
    if not _ALLOCATION_TEXT.fullmatch(text):
        raise ValueError(f"refusing allocation text {escape(text[:60])!r}")
    return q(f'external_ids:{EXTERNAL_ID}="{text}"')


def bridge_vsctl(b: BridgeProgram, controller: str | None, allocation: Allocation | None = None) -> list[str]:
    """One ovs-vsctl transaction: bridge with its settings (and, given, the host's allocation to
    remember), then every port with its exact settings."""
    name = word(b.name)
    remember = f" {allocation_setting(allocation)}" if allocation is not None else ""
    args = [
        f"--may-exist add-br {name}",
        f"set Bridge {name} datapath_type={word(b.datapath_type)} fail_mode=secure protocols={PROTOCOLS}"
        f" other_config:datapath-id={b.datapath_id:016x}{remember}",
    ]
    if b.learn_limit is not None:  # the learned table's cap, in the same transaction (README, Tenant security)
        table, limit, groups = flow_table_settings(b.learn_limit)
        quoted = ",".join(f'"{g}"' for g in groups)
        args.append(f"--id=@learned create Flow_Table name=learned flow_limit={limit} overflow_policy=evict {q(f'groups=[{quoted}]')}")
        args.append(f"set Bridge {name} flow_tables:{table}=@learned")
    for p in b.ports:
        settings = [f"ofport_request={int(p.ofport)}", f"external_ids:{OWNER_KEY}={name}"]
        if p.type:
            settings.insert(0, f"type={word(p.type)}")
            settings.insert(1, q(f"options={_ovsdb_map(p.options)}"))
        args.append(f"--may-exist add-port {name} {word(p.name)}")
        args.append(f"set Interface {word(p.name)} " + " ".join(settings))
    lines = ["ovs-vsctl \\"] + [f"  -- {a} \\" for a in args]
    lines[-1] = lines[-1][: -len(" \\")]
    if controller:
        lines += [
            "# Controller only when it differs: setting it again would clear the bridge's flows.",
            f'[ "$(ovs-vsctl get-controller {name})" = {q(controller)} ] || ovs-vsctl set-controller {name} {q(controller)}',
        ]
    return lines


def stale_ports(b: BridgeProgram) -> list[str]:
    wanted = " ".join(word(p.name) for p in b.ports)
    word(b.name)
    return [
        f"# Ports ovsflow added to {b.name} earlier that the topology no longer has.",
        f"for p in $(ovs-vsctl --bare --columns=name find Interface external_ids:{OWNER_KEY}={b.name}); do",
        f'  case " {wanted} " in *" $p "*) ;; *) echo "ovsflow: removing stale port $p from {b.name}"; ovs-vsctl --if-exists del-port {b.name} "$p" ;; esac',  # noqa: E501
        "done",
    ]


def load_flows(b: BridgeProgram) -> list[str]:
    tag = "OVSFLOW_" + word(b.role).upper() + "_FLOWS"
    word(b.name)
    return [
        f"# {b.name}: {len(b.flows)} flows, replaced in one bundle. Flows that are not ovsflow's static",
        "# program (learned MACs, other tools' flows) are read back and kept.",
        f"keep=$(ovs-ofctl -O OpenFlow14 dump-flows --no-stats {b.name} | grep -v -e '^OFPST_FLOW' -e '^NXST_FLOW' -e '{STATIC_COOKIE_TEXT},' || true)",  # noqa: E501
        f"{{ cat <<'{tag}'",
        *flow_lines(b),
        tag,
        '  [ -z "$keep" ] || printf \'%s\\n\' "$keep"',
        f"}} | ovs-ofctl -O OpenFlow14 --bundle replace-flows {b.name} -",
    ]


def set_groups(b: BridgeProgram) -> list[str]:
    """Groups before the flows that use them: add the missing, modify the changed, leave the same alone
    (one atomic bundle). Every group on an ovsflow bridge is ovsflow's."""
    if not b.groups:
        return []
    word(b.name)
    lines = [
        f"# {b.name}: {len(b.groups)} flood groups (head-end replication lists), set before the flows use them.",
        f"groups_now=$(ovs-ofctl -O OpenFlow14 dump-groups {b.name} | sed -n 's/^ *//p' | grep '^group_id=' || true)",
        "group_mod() {  # $1 id, $2 group text: print the bundle line that makes the switch hold $2",
        '  if printf \'%s\\n\' "$groups_now" | grep -qxF "$2"; then return 0; fi',
        '  if printf \'%s\\n\' "$groups_now" | grep -q "^group_id=$1,"; then echo "group modify $2"; else echo "group add $2"; fi',
        "}",
        "changes=$(",
    ]
    lines += [f"  group_mod {int(g.group_id)} {q(g.ofctl())}" for g in b.groups]
    lines += [")", f'[ -z "$changes" ] || printf \'%s\\n\' "$changes" | ovs-ofctl -O OpenFlow14 bundle {b.name} -']
    return lines


def delete_stale_groups(b: BridgeProgram) -> list[str]:
    wanted = " ".join(str(int(g.group_id)) for g in b.groups)
    word(b.name)
    return [
        "# Groups no flow uses any more (after the flows moved off them).",
        f"for g in $(ovs-ofctl -O OpenFlow14 dump-groups {b.name} | sed -n 's/^ *group_id=\\([0-9]*\\),.*/\\1/p'); do",
        f'  case " {wanted} " in *" $g "*) ;; *) ovs-ofctl -O OpenFlow14 del-groups {b.name} "group_id=$g" ;; esac',
        "done",
    ]


def script_for(program: HostProgram, topo: Topology) -> str:
    int_b, tun_b = program.bridge("int"), program.bridge("tun")
    vlans = ", ".join(f"{n}={v}" for n, v in sorted(program.local_vlans.items(), key=lambda kv: kv[1])) or "none"
    lines = [
        "#!/bin/sh",
        f"# ovsflow {__version__} render of host {c(program.host)} (VTEP {c(program.vtep)}) from {c(topo.source)}",
        f"# Local VLANs: {c(vlans)}",
        "# Idempotent: run it again and nothing changes. Target a private OVS with OVS_RUNDIR=/its/rundir.",
        "set -eu",
        "",
        "# --- bridges and ports -------------------------------------------------------------",
    ]
    for b in (int_b, tun_b):
        for p in b.ports:
            lines.append(c(f"#   {b.name} ofport {p.ofport:>5}  {p.name:<15} {p.comment}"))
        lines += bridge_vsctl(b, topo.controller, program.allocation if b.role == "int" else None)
        lines += stale_ports(b)
        lines.append("")
    lines.append("# --- flows ---------------------------------------------------------------------------")
    for b in (int_b, tun_b):
        lines += set_groups(b)
        lines += load_flows(b)
        if b.role == "tun":
            lines += delete_stale_groups(b)
        lines.append("")
    summary = f"{word(int_b.name)} {len(int_b.flows)} flows, {word(tun_b.name)} {len(tun_b.flows)} flows"
    lines.append(f'echo "ovsflow: {word(program.host)}: {summary}"')
    return "\n".join(lines) + "\n"


def render_script(topo: Topology, host: str, datapath_type: str | None = None, graph: TopologyGraph | None = None) -> str:
    with gc_paused():
        return script_for(compile_host(topo, host, datapath_type, graph), topo)


def render_flows(topo: Topology, host: str, roles: tuple[str, ...] = ("int", "tun"), graph: TopologyGraph | None = None) -> str:
    """The bare flow files (`--format flows`); with both bridges, each starts with a comment naming it."""
    program = compile_host(topo, host, None, graph)
    out: list[str] = []
    for role in roles:
        b = program.bridge(role)
        if len(roles) > 1:
            out.append(c(f"# ===== {b.name} (host {host}) ====="))
        out += flow_lines(b)
    return "\n".join(out) + "\n"


def switch_allocation(bridge: str, timeout: int = 10) -> tuple[Allocation | None, str | None]:
    """The allocation an earlier script recorded on the local OVS (OVS_RUNDIR honoured): (it, None),
    (None, None) when there is none (no bridge, no record: a fresh switch), or (None, why) when it
    cannot be read or is not what ovsflow writes; the caller then numbers afresh."""
    cmd = ["ovs-vsctl", f"--timeout={timeout}", "--if-exists", "get", "Bridge", word(bridge), f"external_ids:{EXTERNAL_ID}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot run ovs-vsctl ({exc})"
    if proc.returncode != 0:
        return None, f"ovs-vsctl get failed: {escape(proc.stderr.strip()[:200])}"
    text = proc.stdout.strip()
    if not text:
        return None, None
    try:
        if text.startswith('"'):
            text = json.loads(text)
        return Allocation.decode(text), None
    except ValueError as exc:
        return None, f"{bridge} external_ids:{EXTERNAL_ID} is not an ovsflow allocation ({escape(str(exc))})"
