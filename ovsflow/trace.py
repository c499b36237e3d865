"""`ovsflow trace`: where one frame goes, and why, across every bridge and tunnel of the fabric.

Pure: the compiled programs are pushed through the evaluator (`evaluator.Fabric`), so the answer is
what the program does before anything is installed. Only the hosts the frame visits are compiled
(a 1,000-host topology costs a handful of hosts per frame), and each once per `Tracer`.

A request names a sending port and a destination; `probe()` turns it into the frame the VM would
put on the wire: to a port of another network of the same router, that is a frame to the router's
MAC (the VM's gateway, found by ARP) - the trace says so. `--learned` first sends what a real
exchange would (the sender's ARP broadcast, the receiver's reply) so learn() has seen both MACs.
The result is a `TraceResult`: steps in order, tunnel legs, deliveries and drops (trace_format.py
prints it as text or JSON).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from .compiler import compile_host
from .evaluator import Fabric, FabricResult, Host, Step
from .fields import BROADCAST, IPPROTO_TCP, IPPROTO_UDP, format_mac, parse_value
from .fields import field as registry_field
from .flow import GotoTable, Group, Output
from .model import Port, Topology
from .packet import Frame
from .pipeline import Pipelines
from .program import HostProgram

KINDS = ("arp", "icmp", "tcp", "udp")
SOURCE_PORT = 49152  # the TCP/UDP source port of traced frames (the first ephemeral port)
NO_IP = "0.0.0.0"


class TraceError(ValueError):
    """A request the topology cannot answer: `option: message (value)`, exit 2."""

    def __init__(self, option: str, message: str, value: str = "") -> None:
        super().__init__(f"{option}: {message}" + (f" ({value})" if value else ""))


@dataclass(frozen=True)
class Request:
    src: str  # a port name of the topology
    to: str | None = None  # a port name
    dst_ip: str | None = None
    dst_mac: str | None = None
    kind: str = "icmp"  # one of KINDS
    l4_port: int | None = None  # destination port for tcp/udp
    fields: tuple[tuple[str, str], ...] = ()  # raw registry fields, name=value, applied last
    learned: bool = False


@dataclass(frozen=True)
class Probe:
    """The frame to trace, where it enters, and what to send first for --learned."""

    port: Port
    frame: Frame
    notes: tuple[str, ...]
    warmup: tuple[tuple[Port, Frame], ...] = ()


@dataclass
class TraceResult:
    probe: Probe
    steps: list[Step]
    delivered: list[tuple[str, str, str]]  # (host, port name or "", iface)
    dropped: list[tuple[Step, str]]  # the step that ended a copy of the frame, and why
    legs: list[Step]  # tunnel arrivals and losses (kind "tunnel"/"lost", with their egress)
    table_names: dict[tuple[str, int], str]  # (bridge role, table id) -> declared name
    roles: dict[tuple[str, str], str]  # (host, bridge) -> role
    learned: int = 0  # flows learn() added during the warm-up
    hosts_compiled: list[str] = field(default_factory=list)
    warmups: list[list[Step]] = field(default_factory=list)  # each warm-up frame's steps

    def table_name(self, host: str, bridge: str, table: int) -> str:
        return self.table_names.get((self.roles.get((host, bridge), ""), table), "?")


def _port(topo: Topology, option: str, name: str) -> Port:
    p = topo.ports.get(name)
    if p is None:
        raise TraceError(option, "unknown port", name)
    return p


def _ip(option: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise TraceError(option, "not an IPv4 address", text) from None


def _mac(option: str, text: str) -> int:
    try:
        return parse_value("mac", text.lower()) if ":" in text else _bad_mac(option, text)
    except ValueError:
        return _bad_mac(option, text)


def _bad_mac(option: str, text: str) -> int:
    raise TraceError(option, "not a MAC address like aa:bb:cc:dd:ee:ff", text)


def _routed(topo: Topology, src: Port, network: str) -> tuple[str, str] | None:
    """(router, its MAC on src's network) when one router joins src's network and `network`."""
    for r in topo.routers.values():
        if src.network in r.networks and network in r.networks and network != src.network:
            return r.name, r.mac(src.network)
    return None


def _find(topo: Topology, network: str, ip: str | None = None, mac: int | None = None) -> Port | None:
    for p in topo.ports.values():
        if p.network == network and (ip is None or p.ip == ip) and (mac is None or parse_value("mac", p.mac) == mac):
            return p
    return None


def probe(topo: Topology, req: Request) -> Probe:
    """The frame `req.src` would send for this request, and the notes that explain it."""
    src = _port(topo, "--from", req.src)
    if req.kind not in KINDS:
        raise TraceError("--kind", f"one of {', '.join(KINDS)}", req.kind)
    if req.to is None and req.dst_ip is None and req.dst_mac is None:
        raise TraceError("destination", "give --to PORT, --dst-ip IP or --dst-mac MAC")
    if req.to is not None and (req.dst_ip or req.dst_mac):
        raise TraceError("--to", "give --to alone, or --dst-ip/--dst-mac", req.to)
    notes: list[str] = []
    dst: Port | None = _port(topo, "--to", req.to) if req.to is not None else None
    dst_ip = _ip("--dst-ip", req.dst_ip) if req.dst_ip is not None else None
    dst_mac = _mac("--dst-mac", req.dst_mac) if req.dst_mac is not None else None
    gateway = topo.networks[src.network].gateway
    if dst is None and dst_ip is not None and dst_mac is None:
        dst = _find(topo, src.network, ip=dst_ip)
        if dst is None:  # another network of src's router?
            dst = next((p for p in topo.ports.values() if p.ip == dst_ip and _routed(topo, src, p.network)), None)
        if dst is None and dst_ip != gateway:
            raise TraceError("--dst-ip", f"no port of network {src.network} or of its router has this address", dst_ip)
    elif dst is None and dst_mac is not None:
        dst = _find(topo, src.network, mac=dst_mac)
    routed = _routed(topo, src, dst.network) if dst is not None else None
    if dst is not None:
        dst_ip = dst_ip or dst.ip
    if dst_mac is None:
        if routed is not None:
            router, rmac = routed
            dst_mac = parse_value("mac", rmac)
            notes.append(f"{dst.name} is in network {dst.network}, routed by {router}: "  # type: ignore[union-attr]
                         f"{src.name} sends to the router's MAC {rmac} (its gateway {gateway}'s, "
                         f"as after ARP for the gateway)")
        elif dst is not None:
            dst_mac = parse_value("mac", dst.mac)
            if dst.network != src.network:
                notes.append(f"no router joins {src.network} and {dst.network}: sent to {dst.name}'s MAC "
                             f"as if it were on the same segment")
        else:  # the gateway itself
            gw_router = next(r for r in topo.routers.values() if src.network in r.networks)
            dst_mac = parse_value("mac", gw_router.mac(src.network))
            notes.append(f"{dst_ip} is the gateway of {src.network}: the router {gw_router.name}'s MAC")
    frame = _frame(req, src, dst_mac, dst_ip or NO_IP, routed is not None, gateway)
    if req.kind == "arp" and routed is not None:
        notes.append(f"ARP for a routed destination: {src.name} asks for its gateway {gateway}")
    for name, text in req.fields:
        frame = _set_field(frame, name, text)
    warmup = _warmup(topo, src, dst, routed is not None) if req.learned else ()
    return Probe(src, replace(frame, payload=""), tuple(notes), warmup)


def _frame(req: Request, src: Port, dst_mac: int, dst_ip: str, routed: bool, gateway: str | None) -> Frame:
    src_ip = src.ip or NO_IP
    if req.kind == "arp":
        return Frame.arp_request(src.mac, src_ip, (gateway or dst_ip) if routed else dst_ip)
    if req.kind == "icmp":
        return Frame.icmp_echo(src.mac, dst_mac, src_ip, dst_ip)
    port = req.l4_port if req.l4_port is not None else 0
    if not 0 <= port <= 0xFFFF:
        raise TraceError(f"--{req.kind}", "a port number 0-65535", str(port))
    proto = IPPROTO_TCP if req.kind == "tcp" else IPPROTO_UDP
    return Frame.transport(src.mac, dst_mac, src_ip, dst_ip, proto, SOURCE_PORT, port)


def _set_field(frame: Frame, name: str, text: str) -> Frame:
    try:
        f = registry_field(name)
    except KeyError:
        raise TraceError("--field", "unknown field", name) from None
    if f.name == "in_port":
        raise TraceError("--field", "in_port is where --from enters", name)
    try:
        value = parse_value(f.kind, text.strip())
    except ValueError:
        raise TraceError("--field", f"not a {f.kind} value for {f.name}", text) from None
    if not 0 <= value < 1 << f.bits:
        raise TraceError("--field", f"{f.name} holds {f.bits} bits", text)
    if f.name in ("dl_vlan", "vlan_vid", "vlan_tci") or f.set_name == "vlan_vid":
        return frame.set("vlan_tci", value if f.name == "vlan_tci" else 0x1000 | (value & 0xFFF))
    return frame.set(f.name, value)


def _warmup(topo: Topology, src: Port, dst: Port | None, routed: bool) -> tuple[tuple[Port, Frame], ...]:
    """What a real exchange sends before the traced frame: src's ARP broadcast (for the
    destination, or its gateway when routed), then the destination's reply to src."""
    gateway = topo.networks[src.network].gateway
    target = (gateway if routed else (dst.ip if dst else None)) or NO_IP
    out: list[tuple[Port, Frame]] = [(src, Frame.arp_request(src.mac, src.ip or NO_IP, target))]
    if dst is None:
        return tuple(out)
    if routed:
        back = _routed(topo, dst, src.network)
        rmac = back[1] if back else src.mac
        out.append((dst, Frame.arp_request(dst.mac, dst.ip or NO_IP, topo.networks[dst.network].gateway or NO_IP)))
        out.append((dst, Frame.icmp_echo(dst.mac, rmac, dst.ip or NO_IP, src.ip or NO_IP)))
    else:
        out.append((dst, Frame.arp_reply(dst.mac, dst.ip or NO_IP, src.mac, src.ip or NO_IP)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------


class Tracer:
    """Traces over one topology; host programs compiled on first visit and kept."""

    def __init__(self, topo: Topology, pipelines: Pipelines | None = None) -> None:
        self.topo = topo
        self.pipelines = pipelines or Pipelines.load()
        self.programs: dict[str, HostProgram] = {}
        self._hosts: dict[str, Host] = {}  # pristine evaluator hosts: each trace runs on forks
        self._by_vtep = {h.vtep: h.name for h in topo.hosts.values()}
        self._by_iface = {(p.host, p.iface): p.name for p in topo.ports.values()}
        self._names = {(role, t.id): t.name for role in ("int", "tun") for t in self.pipelines[role].tables.values()}

    def program(self, host: str) -> HostProgram:
        p = self.programs.get(host)
        if p is None:
            p = self.programs[host] = compile_host(self.topo, host, pipelines=self.pipelines)
        return p

    def host(self, name: str) -> Host:
        """A fresh evaluator host (nothing learned): a fork of the cached one."""
        h = self._hosts.get(name)
        if h is None:
            h = self._hosts[name] = Host(self.program(name), check=False)  # compile_host checked the flows
        return h.fork()

    def _load(self, vtep: str) -> Host | None:
        name = self._by_vtep.get(vtep)
        return self.host(name) if name is not None else None

    def run(self, req: Request) -> TraceResult:
        pr = probe(self.topo, req)
        fabric = Fabric([self.host(pr.port.host)], load=self._load)
        learned, warmups = 0, []
        for port, frame in pr.warmup:
            fabric.hosts.get(port.host) or fabric.add(self.host(port.host))
            w = fabric.inject(port.host, port.iface, frame)
            learned += len(w.learned)
            warmups.append(w.trace.steps)
        res = fabric.inject(pr.port.host, pr.port.iface, pr.frame)
        return self._result(pr, res, fabric, learned, warmups)

    def _result(self, pr: Probe, res: FabricResult, fabric: Fabric, learned: int,
                warmups: list[list[Step]]) -> TraceResult:
        roles = {(h.name, b.name): b.role for h in fabric.hosts.values() for b in h.program.bridges}
        delivered = [(e.host, self._by_iface.get((e.host, e.port), ""), e.port) for e in res.deliveries]
        return TraceResult(pr, res.trace.steps, sorted(delivered), drops(res.trace.steps),
                           [s for s in res.trace.steps if s.kind in ("tunnel", "lost")], self._names, roles,
                           learned, sorted(fabric.hosts), warmups)


def drops(steps: list[Step]) -> list[tuple[Step, str]]:
    """The steps where a copy of the frame ended without leaving a port: a table without a
    matching flow, a flow with nothing to do (a drop flow, a table's miss flow), an expired TTL,
    an output to the in_port or to a missing port, a group without buckets, an underlay loss."""
    out: list[tuple[Step, str]] = []
    for s in steps:
        if s.table is not None:
            if s.flow is None:
                out.append((s, "no flow matches (table miss)"))
            elif not any(isinstance(a, (Output, Group, GotoTable)) for a in s.flow.actions):
                miss = s.flow.priority == 0 and not s.flow.match
                ttl = "nw_ttl" in s.flow.match_dict
                out.append((s, "table miss: dropped" if miss else "TTL expired" if ttl else "dropped by flow"))
        elif s.kind == "ttl":
            out.append((s, "TTL expired"))
        elif s.kind == "in_port":
            out.append((s, "output to the in_port skipped"))
        elif s.kind == "no_port":
            out.append((s, "output to a port the bridge does not have"))
        elif s.kind == "group" and s.note.endswith(": 0 bucket(s)"):
            out.append((s, "group without buckets"))
        elif s.kind == "lost":
            out.append((s, "lost in the underlay"))
    return out


def mac_text(value: int) -> str:
    return "broadcast" if value == BROADCAST else format_mac(value)
