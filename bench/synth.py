"""Synthetic topologies for benchmarks and scale tests: deterministic for a given seed."""

from __future__ import annotations

import ipaddress
import random


def synthetic(hosts: int, networks: int, ports: int, seed: int = 1, mode: str = "learn", ips: bool = False) -> dict:
    """`hosts` VTEPs, `networks` tenants (vxlan/gre/geneve mixed), `ports` VMs spread at random.

    Each network lives on a random subset of hosts (ports/networks VMs per network on average), so
    a host sees about ports/hosts VMs and the networks they belong to, as in a real cloud.
    VTEPs (and, with `ips`, port IPs) come from 198.18.0.0/15, the benchmarking range, as data only:
    nothing ever sends to them.
    """
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
    return data
