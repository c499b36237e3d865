"""Routers in the topology: the value type and the checks the schema cannot express.

A router connects networks (each with a `subnet` and a `gateway`); `mode: distributed` (default)
routes on every host that has a port on one of them, `centralized` on `host` only. Its MAC on each
network is given in `macs`, or 0a:58 followed by the four bytes of the gateway address (the
convention ovn-kubernetes uses): readable in dumps, unique per gateway address of a network.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, NamedTuple

from .problems import Problem

if TYPE_CHECKING:
    from .model import Topology

MODES = ("distributed", "centralized")


class Router(NamedTuple):
    name: str
    networks: tuple[str, ...]  # in the order given
    mode: str = "distributed"
    host: str | None = None  # centralized: the host that routes
    macs: tuple[tuple[str, str], ...] = ()  # (network, MAC) for every network, defaults resolved

    def mac(self, network: str) -> str:
        return dict(self.macs)[network]


def default_mac(gateway: str) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(gateway).packed)


def build_routers(data: dict[str, dict[str, object]] | None, gateways: dict[str, str | None]) -> dict[str, Router]:
    """Routers from the validated document; MACs of networks without a gateway stay unresolved
    (router_problems reports those networks)."""
    out: dict[str, Router] = {}
    for name, r in (data or {}).items():
        nets = tuple(str(n) for n in r["networks"])  # type: ignore[attr-defined]
        given: dict[str, str] = {k: str(v).lower() for k, v in dict(r.get("macs") or {}).items()}  # type: ignore[call-overload]
        macs = []
        for n in nets:
            gw = gateways.get(n)
            if n in given or gw is not None:
                macs.append((n, given.get(n) or default_mac(str(gw))))
        macs += [(n, mac) for n, mac in sorted(given.items()) if n not in nets]  # reported as errors
        host = r.get("host")
        out[name] = Router(name, nets, str(r.get("mode", "distributed")), None if host is None else str(host), tuple(macs))
    return out


def router_problems(topo: Topology, subnets: dict[str, ipaddress.IPv4Network]) -> list[Problem]:
    """Networks exist, have a subnet and a gateway, join one router each, do not overlap within a
    router; a centralized router names a known host (a distributed one none); router MACs are
    unicast, belong to the router's networks and are no port's MAC there."""
    src, out = topo.source, []
    joined: dict[str, str] = {}
    macs_in_use: dict[tuple[str, str], str] = {}
    for p in topo.ports.values():
        macs_in_use.setdefault((p.network, p.mac), p.name)
    for r in topo.routers.values():
        where = f"routers.{r.name}"
        seen_subnets: list[tuple[str, ipaddress.IPv4Network]] = []
        for n in r.networks:
            net = topo.networks.get(n)
            if net is None:
                out.append(Problem(src, f"{where}.networks", "unknown network", n))
                continue
            if net.subnet is None or net.gateway is None:
                out.append(Problem(src, f"{where}.networks", f"network {n} needs a subnet and a gateway to join a router", n))
            if n in joined:
                out.append(Problem(src, f"{where}.networks", f"network {n} already joins router {joined[n]}", n))
            else:
                joined[n] = r.name
            subnet = subnets.get(n)
            if subnet is not None:
                for other, theirs in seen_subnets:
                    if subnet.overlaps(theirs):
                        out.append(Problem(src, f"{where}.networks", f"subnet of {n} overlaps subnet of {other} ({theirs})", str(subnet)))
                seen_subnets.append((n, subnet))
        if r.mode == "centralized":
            if r.host is None:
                out.append(Problem(src, f"{where}.host", "a centralized router needs the host that routes", has_value=False))
            elif r.host not in topo.hosts:
                out.append(Problem(src, f"{where}.host", "unknown host", r.host))
        elif r.host is not None:
            out.append(Problem(src, f"{where}.host", "only a centralized router has a host (this one is distributed)", r.host))
        for n, mac in r.macs:
            if n not in r.networks:
                out.append(Problem(src, f"{where}.macs.{n}", "not one of the router's networks", n))
                continue
            if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
                out.append(Problem(src, f"{where}.macs.{n}", "a router MAC must be a unicast address", mac))
            owner = macs_in_use.get((n, mac))
            if owner is not None:
                out.append(Problem(src, f"{where}.macs.{n}", f"router MAC already used in network {n} by port {owner}", mac))
    return out
