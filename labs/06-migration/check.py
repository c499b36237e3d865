"""Lab 06 check: move a VM to another host while a VM on a third host pings it every 10 ms.

vm2 (blue, l2pop) and vm5 (red, flood-and-learn) go from hv2 to hv3 and back. A move is: the VM's
interface re-plugged into the new host (new veth, same MAC and IP: `Exercise.replug`), the
topology changed (the port's `host`), and the new program applied — by the live controller if the
lab's bridges have one (`ryu-manager ovsflow.app` watching the lab's topology file, which this
check then edits), else by re-running ovsflow's rendered script on every host whose program
changed. In red, the moved VM then sends one gratuitous ARP (`arping -U`). The check expects the
ping to resume after every move, the right hosts' programs to change, and the connectivity
matrix to hold at the end; it prints each move's ping gap (longest silence between replies).
"""

import os  # no `from __future__ import annotations`: test_labs loads this file without sys.modules,
import re  # where dataclasses cannot resolve string annotations
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ovsflow.compiler import compile_host
from ovsflow.lab.check import run_check
from ovsflow.lab.exercise import Exercise, main, ping_gap, ping_replies
from ovsflow.model import load_topology_data, read_document
from ovsflow.pipeline import Pipelines

UNICAST = Pipelines.load().tun["unicast"].id  # br-tun table of the pre-populated (l2pop) entries

PINGER = {"vm2": "vm1", "vm5": "vm4"}  # the moved VM -> its pinger on hv1
HOME, AWAY = "hv2", "hv3"
LEAD_IN_S = 0.5  # ping before the move starts
RESUME_TIMEOUT_S = 10.0
ANNOUNCE_S = (0.0, 0.05, 0.15, 0.25, 0.35)  # gratuitous ARPs after the move, QEMU's self-announce schedule


@dataclass
class MoveResult:
    port: str
    src: str
    dst: str
    mode: str  # "l2pop" or "learn"
    how: str  # "controller" or "render"
    changed: list = field(default_factory=list)  # hosts whose program changed
    replug_s: float = 0.0  # the re-plug alone (unplug, new veth, addresses, OVSDB port)
    program_s: float = 0.0  # replug start -> new program seen on the switches
    gap_s: float = float("inf")  # longest silence between echo replies
    lost: int = -1  # echo requests without a reply
    replies_after: int = 0  # replies received after the move was complete

    def __str__(self) -> str:
        return (f"{self.port} {self.src}->{self.dst} ({self.mode}, by {self.how}): ping gap {self.gap_s * 1000:.0f} ms, "
                f"{self.lost} lost; re-plug {self.replug_s * 1000:.0f} ms, "
                f"program in place {self.program_s * 1000:.0f} ms after it started; "
                f"programs changed on {','.join(self.changed) or 'no host'}")


def controller_target(lab: Exercise) -> str:
    """The OpenFlow controller the lab's br-int points at ("" when the lab was programmed by render)."""
    host = next(iter(lab.state.hosts))
    return lab.ovs(host).vsctl("get-controller", lab.state.hosts[host]["bridge_int"]).strip()


def document(lab: Exercise) -> dict:
    """The lab's topology with every port where the lab has it now (moves so far included)."""
    data = read_document(lab.state.topology)
    for port, vm in lab.state.vms.items():
        data["ports"][port]["host"] = vm["host"]
    return data


def set_host_in_file(path: str, port: str, host: str) -> None:
    """Edit the port's `host:` in place (comments kept), atomically (the app sees one change)."""
    text = Path(path).read_text()
    pattern = re.compile(rf"^(\s*{re.escape(port)}:\s*\{{[^}}\n]*?\bhost:\s*)([\w.-]+)", re.M)
    new, n = pattern.subn(rf"\g<1>{host}", text, count=1)
    if n != 1:
        raise ValueError(f"{path}: no one-line `{port}: {{host: ...}}` entry to edit")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def program_in_place(lab: Exercise, port: str, dst: str, ofport: int, mode: str) -> bool:
    """The flows that say where `port` is now: its in_port flow on the new host's br-int and, for
    l2pop, the pinger's host's table-20 entry for its MAC through the tunnel to `dst`."""
    vm = lab.vm(port)
    if not any(f"in_port={ofport}," in f for f in lab.ovs(dst).dump_flows(lab.state.hosts[dst]["bridge_int"], "table=0")):
        return False
    if mode != "l2pop":
        return True
    pinger_host = lab.vm(PINGER[port])["host"]
    tunnel = lab.tunnel_port(pinger_host, dst, "vxlan")
    t20 = lab.ovs(pinger_host).dump_flows(lab.state.hosts[pinger_host]["bridge_tun"], f"table={UNICAST}")  # l2pop entries
    return any(f"dl_dst={vm['mac']}" in f and "priority=2," in f and f"output:{tunnel}" in f for f in t20)


def announce_start(lab: Exercise, port: str) -> subprocess.Popen:
    """The moved VM announces itself as QEMU does after a migration: several gratuitous ARPs over
    about 350 ms (in the background). One is not enough with OVS: a datapath flow cached from the
    VM's traffic *before* the move still carries learn() results, and when the revalidator pushes
    its last statistics after the first announcement was learned, it re-installs the old location
    (seen here: hv1's entry flipped back to hv3 and the ping never resumed). The later
    announcements, after that push, win. One `arping` per announcement, each started at its
    offset: `arping -U -c 1` sends at once but then waits a whole second before it exits, so a
    chain of them would send at 0, 1.05, 2.2, ... s instead."""
    vm = lab.vm(port)
    steps = " ".join(f"(sleep {d}; arping -q -U -c 1 -I {vm['dev']} {vm['ip']}) &" for d in ANNOUNCE_S)
    return subprocess.Popen(["ip", "netns", "exec", vm["netns"], "sh", "-c", f"{steps} wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def move(lab: Exercise, port: str, dst: str, workdir: Path) -> MoveResult:
    """Move VM `port` to host `dst` while its pinger pings it every 10 ms."""
    src = lab.vm(port)["host"]
    before = document(lab)
    after = document(lab)
    after["ports"][port]["host"] = dst
    old_topo = load_topology_data(before, lab.state.topology)
    new_topo = load_topology_data(after, lab.state.topology)
    mode = new_topo.networks[new_topo.ports[port].network].mode
    how = "controller" if controller_target(lab) else "render"
    hosts = list(lab.state.hosts)
    changed = [h for h in hosts if compile_host(old_topo, h, "netdev") != compile_host(new_topo, h, "netdev")]
    ofport = compile_host(new_topo, dst, "netdev").bridge("int").port(lab.vm(port)["iface"]).ofport
    result = MoveResult(port, src, dst, mode, how, changed)

    out = workdir / f"ping-{port}-{src}-{dst}-{time.monotonic_ns()}.txt"
    ping = lab.start_ping(PINGER[port], lab.vm(port)["ip"], out)
    announce = None
    try:
        time.sleep(LEAD_IN_S)
        t0 = time.monotonic()
        lab.replug(port, dst, ofport)
        result.replug_s = time.monotonic() - t0
        if how == "controller":
            set_host_in_file(lab.state.topology, port, dst)  # the app sees the file change
        else:
            with ThreadPoolExecutor(len(changed) or 1) as pool:
                list(pool.map(lambda h: lab.render(h, new_topo), changed))
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while not program_in_place(lab, port, dst, ofport, mode) and time.monotonic() < deadline:
            time.sleep(0.01)
        result.program_s = time.monotonic() - t0
        if mode == "learn":  # "I am here now": every VTEP's learn() sees the MAC from its new host
            announce = announce_start(lab, port)
        done = time.time()
        while time.monotonic() < deadline and not any(t > done for t, _ in ping_replies(out.read_text())):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        lab.stop_ping(ping)
        if announce is not None:
            announce.wait(10)
    text = out.read_text()
    replies = ping_replies(text)
    result.replies_after = sum(1 for t, _ in replies if t > done)
    result.gap_s = ping_gap(text) or float("inf")
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    result.lost = int(m.group(1)) - int(m.group(2)) if m else -1
    return result


def move_and_back(lab: Exercise, port: str, workdir: Path, rounds: int = 1) -> list:
    results = []
    for _ in range(rounds):
        results.append(move(lab, port, AWAY, workdir))
        results.append(move(lab, port, HOME, workdir))
    return results


def check(lab: Exercise, rounds: int = 1) -> list:
    """The lab's check; returns the MoveResults (the test suite reports their figures)."""
    how = "the live controller (topology file edited)" if controller_target(lab) else "re-running the rendered scripts"
    lab.say(f"the new program is applied by {how}")
    lab.say("step 0: everything reachable before the moves")
    lab.expect(lab.ping("vm1", "vm2") and lab.ping("vm4", "vm5"), "vm1 -> vm2 (blue) and vm4 -> vm5 (red) work")
    workdir = Path(tempfile.mkdtemp(prefix="moves-", dir=lab.state.workdir))
    results = []
    for port, expected in (("vm2", {"hv1", "hv2", "hv3"}), ("vm5", {"hv2", "hv3"})):
        mode = "l2pop" if port == "vm2" else "learn (+ gratuitous ARP)"
        lab.say(f"step: move {port} ({mode}) {HOME} -> {AWAY} -> {HOME}, pinged from {PINGER[port]} every 10 ms")
        moves = move_and_back(lab, port, workdir, rounds)
        for r in moves:
            lab.say(f"    {r}")
            lab.expect(r.replies_after > 0, f"{port} {r.src}->{r.dst}: the ping resumed ({r.replies_after} replies after the move)")
            lab.expect(set(r.changed) == expected,
                       f"... the programs of exactly {','.join(sorted(expected))} changed ({','.join(r.changed)})")
        gaps = [r.gap_s for r in moves]
        lab.say(f"    {port}: ping gaps {', '.join(f'{g * 1000:.0f}' for g in gaps)} ms, median {statistics.median(gaps) * 1000:.0f} ms")
        results += moves
    lab.say("step: back home, the connectivity matrix (`ovsflow lab check`)")
    matrix = run_check(lab.state)
    bad = [f"{r.src}->{r.dst}: {'; '.join(r.violations)}" for r in matrix.pairs.values() if not r.ok]
    lab.expect(not bad, f"every same-network pair reaches, every cross-network pair is isolated {bad[:3]}")
    return results


if __name__ == "__main__":
    main(check, __doc__)
