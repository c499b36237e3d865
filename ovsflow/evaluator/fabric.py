"""Hosts joined by tunnels over an ideal underlay: a frame is followed through every host and
tunnel it reaches, as the real fabric would carry it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..flow import Flow
from ..packet import Frame
from ..program import HostProgram, PortConfig
from .host import Host
from .results import Egress, EvaluationError, FabricResult, Step, Trace
from .tables import Bridge

MAX_TUNNEL_HOPS = 10_000  # a fabric-wide forwarding loop guard


class Fabric:
    """Several hosts; a frame leaving on a tunnel port enters the host owning its remote_ip, on
    that host's tunnel port of the same type whose remote_ip is the sender (OVS's tunnel port
    lookup by type, addresses and key). No such port: the frame is lost (OVS drops it too)."""

    def __init__(self, programs: Iterable[HostProgram | Host],
                 load: Callable[[str], HostProgram | Host | None] | None = None, check: bool = True) -> None:
        """`load(vtep)`: the program (or a ready Host) of a host not given yet, asked for when a
        tunnel first reaches its VTEP (None: no such host), so a trace compiles only the hosts it
        visits."""
        self.hosts: dict[str, Host] = {}
        self.by_vtep: dict[str, Host] = {}
        self._load = load
        self._check = check
        for p in programs:
            self.add(p)

    def add(self, program: HostProgram | Host) -> Host:
        h = program if isinstance(program, Host) else Host(program, self._check)
        self.hosts[h.name] = h
        self.by_vtep[h.vtep] = h
        return h

    def advance(self, seconds: float) -> list[tuple[str, Flow]]:
        return [(h.name, f) for h in self.hosts.values() for f in h.advance(seconds)]

    def _ingress(self, e: Egress) -> tuple[Host, Bridge, PortConfig] | str:
        dst = self.by_vtep.get(e.remote_ip or "")
        if dst is None and self._load is not None and e.remote_ip:
            found = self._load(e.remote_ip)
            dst = self.add(found) if found is not None else None
        if dst is None:
            return f"no host has VTEP {e.remote_ip}"
        src_ip = e.local_ip or self.hosts[e.host].vtep
        fallback = None
        for b in dst.bridges.values():
            for p in b.ports.values():
                if p.type != e.type:
                    continue
                o = dict(p.options)
                if o.get("local_ip", dst.vtep) != dst.vtep:
                    continue
                key = o.get("key", "0")
                if key != "flow" and int(key, 0) != e.tun_id:
                    continue
                if o.get("remote_ip") == src_ip:
                    return dst, b, p
                if o.get("remote_ip") == "flow" and fallback is None:
                    fallback = (dst, b, p)
        return fallback or f"{dst.name} has no {e.type} port for remote {src_ip}"

    def inject(self, host: str, port: str, frame: Frame) -> FabricResult:
        """A frame sent by whatever sits on `port` of `host`; follow it through every tunnel."""
        trace = Trace()
        res = FabricResult([], [], [], trace, [])
        h = self.hosts[host]
        b, p = h.find_port(port)
        queue: deque[tuple[Host, str, int, Frame, Step | None]] = deque([(h, b.name, p.ofport, frame, None)])
        hops = 0
        while queue:
            h, bridge, ofport, f, arrival = queue.popleft()
            if arrival is not None:  # noted here, so each leg comes just before its host's steps
                trace.steps.append(arrival)
            r = h.inject_ofport(bridge, ofport, f, trace)
            res.learned += [(h.name, fl) for fl in r.learned]
            for e in r.outputs:
                if not e.is_tunnel:
                    res.deliveries.append(e)
                    continue
                res.tunnel_hops.append(e)
                hops += 1
                if hops > MAX_TUNNEL_HOPS:
                    raise EvaluationError(f"forwarding loop across hosts:\n{trace.tail()}")
                target = self._ingress(e)
                if isinstance(target, str):
                    res.lost.append((e, target))
                    trace.steps.append(Step(e.host, e.bridge, None, None, e.frame, 0,
                                            f"lost in the underlay: {target}", kind="lost", egress=e))
                    continue
                th, tb, tp = target
                arrival = Step(th.name, tb.name, None, None, e.frame, 0,
                               f"tunnel {e.host}->{th.name} arrives on {tp.name}", kind="tunnel", egress=e)
                queue.append((th, tb.name, tp.ofport, replace(e.frame, tun_id=e.tun_id or 0), arrival))
        return res

