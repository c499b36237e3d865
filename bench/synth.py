"""Synthetic topologies for benchmarks and scale tests: deterministic for a given seed."""

from __future__ import annotations

import ipaddress
import random

ROUTER_MODES = ("distributed", "centralized", "mixed")
SUBNETS = ("198.18.0.0/16", "198.19.0.0/16")  # a router's two networks; every router reuses them


def synthetic(hosts: int, networks: int, ports: int, seed: int = 1, mode: str = "learn", ips: bool = False,
              routers: int = 0, router_mode: str = "distributed") -> dict:
    """`hosts` VTEPs, `networks` tenants (vxlan/gre/geneve mixed), `ports` VMs spread at random.

    Each network lives on a random subset of hosts (ports/networks VMs per network on average), so
    a host sees about ports/hosts VMs and the networks they belong to, as in a real cloud.
    VTEPs (and, with `ips`, port IPs) come from 198.18.0.0/15, the benchmarking range, as data only:
    nothing ever sends to them.

    With `routers`, networks are paired into that many routers (net0+net1 -> r0, net2+net3 -> r1,
    ...): the two networks of a pair get SUBNETS (every router reuses them, as tenants do) with
    gateway .0.1, and their ports IPs from those subnets. `router_mode` distributed, centralized
    (routed on the first network's first host) or mixed (alternating).
    """
    if router_mode not in ROUTER_MODES:
        raise ValueError(f"router_mode must be one of {ROUTER_MODES}")
    if 2 * routers > networks:
        raise ValueError(f"{routers} routers need {2 * routers} networks, not {networks}")
    rng = random.Random(seed)
    base = int(ipaddress.IPv4Address("198.18.0.0"))  # benchmark range (RFC 2544), data only
    data: dict = {
        "hosts": {f"hv{i}": {"vtep": str(ipaddress.IPv4Address(base + 1 + i))} for i in range(hosts)},
        "networks": {},
        "ports": {},
    }
    kinds = ("vxlan", "vxlan", "gre", "geneve")
    for n in range(networks):
        data["networks"][f"net{n}"] = {"vni": 1000 + n, "tunnel": kinds[n % len(kinds)], "mode": mode}
    per_net = max(1, ports // max(1, networks))
    spread = max(1, min(hosts, per_net))
    homes = {n: rng.sample(range(hosts), spread) for n in range(networks)}
    for p in range(ports):
        n = p % networks
        h = homes[n][(p // networks) % spread]
        data["ports"][f"p{p}"] = {
            "host": f"hv{h}",
            "network": f"net{n}",
            "mac": f"02:{(p >> 32) & 0xff:02x}:{(p >> 24) & 0xff:02x}:{(p >> 16) & 0xff:02x}:{(p >> 8) & 0xff:02x}:{p & 0xff:02x}",
        }
        if ips:
            data["ports"][f"p{p}"]["ip"] = str(ipaddress.IPv4Address(base + 1 + (p % 131000)))
    if routers:
        add_routers(data, homes, routers, router_mode)
    return data


def add_routers(data: dict, homes: dict[int, list[int]], routers: int, router_mode: str) -> None:
    """Pair net(2k) and net(2k+1) into router r(k); subnets, gateways and port IPs to match."""
    data["routers"] = {}
    for k in range(routers):
        pair = (f"net{2 * k}", f"net{2 * k + 1}")
        r: dict = {"networks": list(pair)}
        if router_mode == "centralized" or (router_mode == "mixed" and k % 2):
            r["mode"], r["host"] = "centralized", f"hv{homes[2 * k][0]}"
        data["routers"][f"r{k}"] = r
        for net, subnet in zip(pair, SUBNETS):
            first = int(ipaddress.ip_network(subnet).network_address)
            data["networks"][net].update(subnet=subnet, gateway=str(ipaddress.IPv4Address(first + 1)))
    counters: dict[str, int] = {}
    for port in data["ports"].values():
        net = port["network"]
        if "subnet" in data["networks"][net]:
            i = counters[net] = counters.get(net, 0) + 1
            first = int(ipaddress.ip_network(data["networks"][net]["subnet"]).network_address)
            port["ip"] = str(ipaddress.IPv4Address(first + 1 + i))
