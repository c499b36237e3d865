"""The l2pop ARP and ND responders answer a real Linux VM from inside one real OVS.

One host of seed003-l2pop (hv1) with its blue VM in a namespace: the VM's ARP request and IPv6
neighbour solicitation for blue2's addresses (blue2 lives on hv2) are answered by hv1's br-tun and
land in the VM's neighbour table with blue2's MAC; no tunnel carries anything. For a local address
the responder stays silent, and for an unknown one the request floods (the flood group's counter).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ovsflow.compiler import compile_host
from ovsflow.lab import netns as nsmod
from ovsflow.model import load_topology
from ovsflow.render import render_script

pytestmark = pytest.mark.ovs
DATA = Path(__file__).parent / "data"


def neigh(vm: str, family: str, addr: str) -> str:
    return nsmod.run(["ip", family, "neigh", "show", addr], netns=vm).stdout.strip()


def test_arp_and_nd_answered_in_the_switch(ovs, netns_factory) -> None:
    topo = load_topology(DATA / "seed003-l2pop.yaml")
    program = compile_host(topo, "hv1", "netdev")
    vm = netns_factory("vm")
    port = topo.ports["blue1"]
    nsmod.veth_add(port.iface, ovs.netns, "eth0", vm)
    # the other hv1 VM (red1) only needs its interface to exist
    nsmod.veth_add(topo.ports["red1"].iface, ovs.netns, "r1peer", ovs.netns)
    nsmod.link_up(port.iface, ovs.netns)
    nsmod.link_set_mac("eth0", port.mac, vm)
    nsmod.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], netns=vm)
    nsmod.link_up("eth0", vm, mtu=1450)
    nsmod.tx_offload_off("eth0", vm)
    nsmod.addr_add("eth0", "198.51.100.1/24", vm)
    nsmod.run(["ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"], netns=vm)
    proc = subprocess.run(["sh", "-s"], input=render_script(topo, "hv1", "netdev"), text=True,
                          capture_output=True, env={**os.environ, **ovs.env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tun = program.bridge("tun").name

    # ARP for blue2 (remote): answered by the switch with blue2's MAC
    arping = nsmod.run(["arping", "-c", "1", "-w", "2", "-I", "eth0", "198.51.100.2"], netns=vm, check=False)
    assert "02:00:00:00:00:02" in arping.stdout.lower(), arping.stdout + arping.stderr
    # ND for blue2's IPv6 address: the kernel accepts the switch-built advertisement
    nsmod.run(["ping", "-6", "-c", "1", "-W", "1", "2001:db8::2"], netns=vm, check=False)
    deadline = time.monotonic() + 3
    while "lladdr" not in neigh(vm, "-6", "2001:db8::2") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "lladdr 02:00:00:00:00:02" in neigh(vm, "-6", "2001:db8::2")

    stats = ovs.dump_flows(tun, "table=23", stats=True)
    answered = [ln for ln in stats if "nd_target=2001:db8::2" in ln]
    assert answered and "n_packets=0" not in answered[0], stats
    # nothing was sent to a tunnel: every tunnel port's tx counter is still 0
    for p in program.bridge("tun").ports:
        if p.type in ("vxlan", "gre"):
            tx = ovs.vsctl("get", "Interface", p.name, "statistics:tx_packets").strip()
            assert tx in ("0", ""), (p.name, tx)

    # an ARP for an unknown IPv4 address misses the responder (table 21's miss flow) and floods
    def misses() -> int:
        [line] = [ln for ln in ovs.dump_flows(tun, "table=21", stats=True) if "priority=0" in ln]
        return int(line.split("n_packets=")[1].split(",")[0])

    before = misses()
    nsmod.run(["arping", "-c", "1", "-w", "1", "-I", "eth0", "198.51.100.77"], netns=vm, check=False)
    assert misses() == before + 1
    assert "lladdr" not in neigh(vm, "-4", "198.51.100.77")
