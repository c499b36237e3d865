"""Anti-spoofing with real packets on the seed-003 scenario (labs/03-seed003, vm3 given an
allowed address): spoofed source IP, ARP sender and source MAC reach nobody (tcpdump inside the
neighbours' namespaces sees nothing), an allowed address works, normal traffic still flows.
(The lab disables IPv6 in its namespaces; ND checks are covered by tests/test_antispoof.py.)
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import lab_name

from ovsflow.lab import lab as labmod
from ovsflow.model import load_topology_data

pytestmark = pytest.mark.ovs

TOPOLOGY = Path(__file__).resolve().parent.parent / "labs" / "03-seed003" / "topology.yaml"
NAME = lab_name("as")
ALLOWED = "198.51.100.50"  # vm3's VRRP-style extra address
SPOOF_IP, SPOOF_ARP, SPOOF_MAC = "198.51.100.99", "198.51.100.98", "02:00:00:00:01:99"


@pytest.fixture(scope="module")
def lab(lab_base: Path):
    data = yaml.safe_load(TOPOLOGY.read_text())
    data["ports"]["vm3"]["allowed_addresses"] = [ALLOWED]
    try:
        yield labmod.up(load_topology_data(data, "seed003+allowed"), NAME)
    finally:
        labmod.down(NAME)


def seen(state, vms: list[str], bpf: str, action: Callable[[], object], wait: float = 1.5) -> dict[str, list[str]]:
    """Packets matching `bpf` that tcpdump inside each VM of `vms` saw while `action` ran."""
    procs = {}
    try:
        for vm in vms:
            info = state.vms[vm]
            procs[vm] = subprocess.Popen(["ip", "netns", "exec", info["netns"], "tcpdump", "-i", info["dev"], "-n", "-l",
                                          "-U", bpf], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for vm, p in procs.items():  # wait until each listens
            assert p.stderr is not None
            lines = [p.stderr.readline() for _ in range(2)]  # "verbose output suppressed", "listening on"
            assert any("listening on" in ln for ln in lines), f"tcpdump in {vm}: {lines}"
        action()
        time.sleep(wait)
    finally:
        out = {}
        for vm, p in procs.items():
            p.terminate()
            stdout, _ = p.communicate(timeout=10)
            out[vm] = [ln for ln in stdout.splitlines() if ln.strip()]
    return out


def test_normal_traffic_still_flows(lab) -> None:
    for a, b in (("vm1", "vm2"), ("vm2", "vm3"), ("vm4", "vm6")):
        assert labmod.ping(lab, a, lab.vms[b]["ip"]), f"{a} -> {b}"


def test_spoofed_source_ip_reaches_nobody(lab) -> None:
    dev = lab.vms["vm1"]["dev"]
    assert labmod.ping(lab, "vm1", lab.vms["vm2"]["ip"])  # the control, and vm2's MAC in vm1's cache
    labmod.vm_run(lab, "vm1", ["ip", "addr", "add", f"{SPOOF_IP}/24", "dev", dev])
    try:
        results: list[bool] = []

        def pings() -> None:
            for b in ("vm2", "vm3"):
                results.append(labmod.vm_run(lab, "vm1", ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-I", SPOOF_IP,
                                                          lab.vms[b]["ip"]], check=False).returncode == 0)

        got = seen(lab, ["vm2", "vm3"], f"host {SPOOF_IP}", pings)
        print(f"spoofed {SPOOF_IP}: replies {results}, frames seen {got}")
        assert results == [False, False]
        assert got == {"vm2": [], "vm3": []}
    finally:
        labmod.vm_run(lab, "vm1", ["ip", "addr", "del", f"{SPOOF_IP}/24", "dev", dev], check=False)
    assert labmod.ping(lab, "vm1", lab.vms["vm2"]["ip"])


def test_spoofed_arp_sender_gets_no_answer_and_is_not_seen(lab) -> None:
    dev, target = lab.vms["vm1"]["dev"], lab.vms["vm2"]["ip"]
    rcs: list[int] = []

    def arping() -> None:
        rcs.append(labmod.vm_run(lab, "vm1", ["arping", "-c", "2", "-w", "2", "-I", dev, "-s", SPOOF_ARP, target],
                                 check=False).returncode)
        rcs.append(labmod.vm_run(lab, "vm1", ["arping", "-c", "2", "-w", "2", "-I", dev, target], check=False).returncode)

    labmod.vm_run(lab, "vm1", ["ip", "addr", "add", f"{SPOOF_ARP}/32", "dev", dev])  # so arping may bind to it
    try:
        got = seen(lab, ["vm2", "vm3"], f"arp and host {SPOOF_ARP}", arping)
    finally:
        labmod.vm_run(lab, "vm1", ["ip", "addr", "del", f"{SPOOF_ARP}/32", "dev", dev], check=False)
    print(f"arping from {SPOOF_ARP}: rc {rcs[0]}, from its own address rc {rcs[1]}; seen {got}")
    assert rcs == [1, 0]  # 1: sent, no reply (2 would be an error before sending)
    assert got == {"vm2": [], "vm3": []}


def test_spoofed_source_mac_reaches_nobody(lab) -> None:
    dev, own = lab.vms["vm1"]["dev"], lab.vms["vm1"]["mac"]
    labmod.vm_run(lab, "vm1", ["ip", "link", "set", "dev", dev, "address", SPOOF_MAC])
    try:
        ok: list[bool] = []
        got = seen(lab, ["vm2", "vm3"], f"ether src {SPOOF_MAC}",
                   lambda: ok.append(labmod.ping(lab, "vm1", lab.vms["vm2"]["ip"], count=2)))
        print(f"source MAC {SPOOF_MAC}: ping {ok}, seen {got}")
        assert ok == [False] and got == {"vm2": [], "vm3": []}
    finally:
        labmod.vm_run(lab, "vm1", ["ip", "link", "set", "dev", dev, "address", own], check=False)
    assert labmod.ping(lab, "vm1", lab.vms["vm2"]["ip"])


def test_allowed_address_works(lab) -> None:
    dev = lab.vms["vm3"]["dev"]
    labmod.vm_run(lab, "vm3", ["ip", "addr", "add", f"{ALLOWED}/24", "dev", dev])
    try:
        proc = labmod.vm_run(lab, "vm3", ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-I", ALLOWED,
                                          lab.vms["vm1"]["ip"]], check=False)
        print(proc.stdout)
        assert proc.returncode == 0, proc.stdout
        assert labmod.ping(lab, "vm2", ALLOWED)  # the neighbour reaches the allowed address too
    finally:
        labmod.vm_run(lab, "vm3", ["ip", "addr", "del", f"{ALLOWED}/24", "dev", dev], check=False)
