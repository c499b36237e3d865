"""The learned table's cap with real packets (README, Tenant security): a compromised host (hv1 of
the seed-003 lab, whose br-tun the test drives with packet-outs) floods hv2 over VXLAN with frames
from random source MACs; hv2's learned table stays at its cap (learn.max_entries, here 100) while
vm1 (hv1) keeps pinging vm2 (hv2). Prints the entries and the ping loss."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import lab_name

from ovsflow.compiler import LEARN_TABLE, compile_host
from ovsflow.lab import lab as labmod
from ovsflow.model import load_topology_data
from ovsflow.program import COOKIE_LEARNED

pytestmark = pytest.mark.ovs

TOPOLOGY = Path(__file__).resolve().parent.parent / "labs" / "03-seed003" / "topology.yaml"
NAME = lab_name("lc")
CAP, FLOOD = 100, 400


@pytest.fixture(scope="module")
def lab(lab_base: Path):
    data = yaml.safe_load(TOPOLOGY.read_text())
    data.setdefault("learn", {})["max_entries"] = CAP
    topo = load_topology_data(data, "seed003+cap")
    try:
        yield topo, labmod.up(topo, NAME)
    finally:
        labmod.down(NAME)


def learned(state, host: str) -> list[str]:
    ovs = labmod.host_ovs(state, host)
    return ovs.dump_flows("br-tun", f"table={LEARN_TABLE},cookie={COOKIE_LEARNED:#x}/-1")


def test_random_source_mac_flood_stays_at_the_cap_and_a_known_pair_keeps_pinging(lab) -> None:
    topo, state = lab
    blue = topo.networks["blue"]
    hv1 = labmod.host_ovs(state, "hv1")
    tunnel = next(p for p in compile_host(topo, "hv1").bridge("tun").ports if "to hv2" in p.comment and p.type == blue.tunnel)
    vm2_mac = topo.ports["vm2"].mac.replace(":", "")
    rng = random.Random(15)
    assert labmod.ping(state, "vm1", state.vms["vm2"]["ip"])  # the known pair, learned both ways
    before = len(learned(state, "hv2"))
    dev = state.vms["vm1"]["dev"]
    pinger = subprocess.Popen(["ip", "netns", "exec", state.vms["vm1"]["netns"], "ping", "-n", "-q", "-i", "0.05", "-w", "30",
                               "-I", dev, state.vms["vm2"]["ip"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        t = time.monotonic()
        for _ in range(FLOOD):
            src = f"02{rng.getrandbits(40):010x}"
            frame = vm2_mac + src + "88b5" + "00" * 46
            hv1.ofctl("packet-out", hv1.mgmt("br-tun"),
                      f"in_port=controller packet={frame} actions=set_field:{blue.vni}->tun_id,output:{tunnel.ofport}")
        flood_s = time.monotonic() - t
        time.sleep(1.0)
        entries = learned(state, "hv2")
        ok_after = labmod.ping(state, "vm1", state.vms["vm2"]["ip"])
    finally:
        pinger.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
        out, _ = pinger.communicate(timeout=10)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, got = int(m.group(1)), int(m.group(2))
    loss = 100.0 * (sent - got) / max(sent, 1)
    print(f"flood: {FLOOD} random source MACs from hv1 in {flood_s:.2f} s; hv2 learned entries {before} -> {len(entries)}"
          f" (cap {CAP}); vm1 -> vm2 ping during the flood: {got}/{sent} received, {loss:.1f}% loss")
    assert len(entries) == CAP, entries[:5]
    assert ok_after
    assert sent >= 20 and loss <= 5.0, out
