"""What the evaluator reports: frames leaving hosts (Egress), the steps a frame took (Trace), and
the outcome of one injection into a host (Result) or a fabric (FabricResult)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..flow import Flow
from ..packet import Frame
from ..program import TUNNEL_TYPES


class EvaluationError(Exception):
    """The program does something the evaluator cannot model, or OVS would refuse or loop on."""


@dataclass(frozen=True, slots=True)
class Egress:
    """A frame leaving a host on a non-patch port (a VM port, a tunnel, anything else)."""

    host: str
    bridge: str
    port: str
    ofport: int
    type: str  # PortConfig.type: "" for VM ports, "vxlan"/"gre"/"geneve" for tunnels
    frame: Frame  # as on the wire (inner frame for tunnels): metadata cleared
    tun_id: int | None = None  # the tunnel key, for tunnel ports
    remote_ip: str | None = None
    local_ip: str | None = None

    @property
    def is_tunnel(self) -> bool:
        return self.type in TUNNEL_TYPES

    def __str__(self) -> str:
        where = f"{self.host}/{self.bridge}:{self.port}({self.ofport})"
        if self.is_tunnel:
            where += f" {self.type} key={self.tun_id:#x} -> {self.remote_ip}"
        return f"{where}: {self.frame}"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a trace: a table lookup (flow None = miss) or a note (table None).

    A note's `kind` says what happened, for tools that must not parse `note` (trace.py): "patch",
    "output" (with `egress`), "group", "learn", "ttl" (expired: dropped), "in_port" (output to the
    in_port skipped), "no_port" (output to a port the bridge lacks), "tunnel" (arrival on the next
    host, with the `egress` that carried it), "lost" (no host accepted a tunnel frame)."""

    host: str
    bridge: str
    table: int | None
    flow: Flow | None
    frame: Frame
    depth: int
    note: str = ""
    tied: tuple[Flow, ...] = ()
    kind: str = ""
    egress: Egress | None = None


@dataclass
class Trace:
    """What a frame did, in order, like `ovs-appctl ofproto/trace`: made to go in assert messages."""

    steps: list[Step] = field(default_factory=list)

    def hits(self) -> list[tuple[str, str, int, Flow | None]]:
        return [(s.host, s.bridge, s.table, s.flow) for s in self.steps if s.table is not None]

    def tables(self, host: str | None = None, bridge: str | None = None) -> list[int]:
        return [t for h, b, t, _ in self.hits()
                if (host is None or h == host) and (bridge is None or b == bridge)]

    def notes(self) -> list[str]:
        return [s.note for s in self.steps if s.table is None]

    @property
    def ambiguities(self) -> list[Step]:
        return [s for s in self.steps if s.tied]

    def tail(self, n: int = 40) -> str:
        """The last n steps: enough to see a loop without printing thousands of lines."""
        cut = len(self.steps) - n
        text = str(Trace(self.steps[-n:]))
        return (f"... ({cut} earlier steps)\n" + text) if cut > 0 else text

    def __str__(self) -> str:
        lines = []
        for s in self.steps:
            pad = "  " * s.depth
            if s.table is None:
                lines.append(f"{pad}  -> {s.note}")
                continue
            what = str(s.flow) if s.flow is not None else "no match: drop"
            lines.append(f"{pad}{s.host}/{s.bridge} table {s.table} [{s.frame}]: {what}")
            for t in s.tied:
                lines.append(f"{pad}  !! tie at same priority with: {t}")
        return "\n".join(lines)


@dataclass
class Result:
    """The outcome of one frame injected into one host."""

    outputs: list[Egress]
    trace: Trace
    learned: list[Flow]

    def ports(self) -> list[str]:
        return sorted(e.port for e in self.outputs)


@dataclass
class FabricResult:
    """The outcome of one frame injected into a fabric of hosts, tunnels followed."""

    deliveries: list[Egress]  # frames leaving on non-tunnel ports (VMs), on any host
    tunnel_hops: list[Egress]  # every frame sent into a tunnel
    lost: list[tuple[Egress, str]]  # tunnel frames no remote host accepted, and why
    trace: Trace
    learned: list[tuple[str, Flow]]  # (host, flow)

    def delivered_to(self) -> list[tuple[str, str]]:
        """Sorted (host, port) of every delivery; duplicates kept (a duplicate is a bug)."""
        return sorted((e.host, e.port) for e in self.deliveries)
