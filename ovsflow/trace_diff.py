"""The differential check behind `trace --live`'s tests and benchmark: a topology's programs loaded
into real switches (one private OVS per host), then every ordered pair of ports traced by the
evaluator and by `ovs-appctl ofproto/trace`, hop by hop; any disagreement is returned.

Loading follows the render script's essentials (fail_mode secure, OpenFlow 1.0-1.5, patch and
tunnel ports with the requested ofports, groups before flows, one bundle): VM ports are left out,
as OVS traces flows that name ports it does not have (their outputs still show in the trace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .ofctl import flow_lines
from .program import OPENFLOW_VERSIONS, HostProgram
from .trace import KINDS, Request, Tracer
from .trace_live import Appctl, Hop, compare_live


class Switch(Protocol):
    workdir: Path

    def vsctl(self, *args: str, timeout: int = 10) -> str: ...
    def ofctl(self, *args: str, input: str | None = None) -> str: ...
    def appctl(self, *args: str) -> str: ...
    def mgmt(self, bridge: str) -> str: ...


def load_program(ovs: Switch, program: HostProgram, datapath_type: str = "netdev") -> None:
    """Fresh bridges (an earlier load's deleted), patch and tunnel ports, groups, flows; on the
    userspace datapath unless told otherwise (flows do not depend on it)."""
    args: list[str] = []
    for b in program.bridges:  # a transaction of its own: within one, OVS keeps the bridge (and its groups)
        args += ["--", "--if-exists", "del-br", b.name]
    ovs.vsctl(*args[1:])
    args = []
    for b in program.bridges:
        args += ["--", "add-br", b.name, "--", "set", "Bridge", b.name, f"datapath_type={datapath_type}",
                 "fail_mode=secure", f"protocols={','.join(OPENFLOW_VERSIONS)}"]
        for p in b.ports:
            if p.type:
                args += ["--", "add-port", b.name, p.name, "--", "set", "Interface", p.name, f"type={p.type}",
                         f"ofport_request={p.ofport}", *[f"options:{k}={v}" for k, v in p.options]]
    ovs.vsctl(*args[1:])
    for b in program.bridges:
        target = ovs.mgmt(b.name)
        if b.groups:
            groups = ovs.workdir / f"{program.host}-{b.name}.groups"
            groups.write_text("".join(g.ofctl() + "\n" for g in b.groups))
            ovs.ofctl("add-groups", target, str(groups))
        flows = ovs.workdir / f"{program.host}-{b.name}.flows"
        flows.write_text("\n".join(flow_lines(b, comments=False)) + "\n")
        ovs.ofctl("--bundle", "replace-flows", target, str(flows))


@dataclass
class DiffResult:
    traces: int = 0  # frames traced (ordered pairs x kinds)
    hops: int = 0  # ofproto/trace calls
    disagreements: list[tuple[str, Hop]] = field(default_factory=list)


def differential(tracer: Tracer, switches: dict[str, Switch], kinds: tuple[str, ...] = ("icmp", "arp"),
                 pairs: list[tuple[str, str]] | None = None) -> DiffResult:
    """Load every host's program into its switch, then trace every ordered pair of ports (or
    `pairs`) with each kind; the switches are fresh per frame (nothing learned: the evaluator
    starts fresh too)."""
    assert set(kinds) <= set(KINDS)
    topo = tracer.topo
    for host, ovs in switches.items():
        load_program(ovs, tracer.program(host))
    appctls: dict[str, Appctl] = {h: s.appctl for h, s in switches.items()}
    names = sorted(topo.ports)
    todo = pairs if pairs is not None else [(a, b) for a in names for b in names if a != b]
    out = DiffResult()
    for a, b in todo:
        for kind in kinds:
            req = Request(a, to=b, kind=kind)
            result = tracer.run(req)
            report = compare_live(tracer, req, result, None, appctls)
            out.traces += 1
            out.hops += len(report.hops)
            out.disagreements += [(f"{a}->{b} {kind}", h) for h in report.hops if not h.agree or h.theirs is None]
    return out
