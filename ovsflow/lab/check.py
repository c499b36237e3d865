"""`lab check`: the connectivity matrix, proven with ping *and* with marked frames.

For every ordered pair of VMs (a, b):
- same network: a must ping b's IP, the neighbour entry a learns for that IP must be b's MAC (so
  the right VM answered), and b must receive a's marked probe frames (L2, see probe.py);
- different networks: b must receive none of a's probe frames — a broadcast and a unicast to b's
  MAC, which the pipeline would deliver to b if isolation were broken — and a's ping to b's IP must
  fail, unless that IP also belongs to a VM of a's own network (overlapping tenants): then the
  answer must come from that VM, and the probe frames are the proof that b saw nothing;
- different networks of one router (routed): a must ping b's IP (one router hop), and b must still
  receive none of a's probe frames (routing is IPv4 to the router's MAC, never L2 across networks).
  An IP of another tenant that a VM of a's router also has is answered by that VM (a's "own" side).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import netns as ns
from .state import LabState


@dataclass
class PairResult:
    src: str
    dst: str
    same_network: bool
    ping: bool | None  # None: no IPs, or pinging one's own address
    neighbour_mac: str | None
    l2: bool  # did dst receive src's probe frames
    note: str = ""
    routed: bool = False  # different networks joined by one router: the ping must go through
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class CheckResult:
    ports: list[str]
    pairs: dict[tuple[str, str], PairResult]
    seconds: float

    @property
    def violations(self) -> list[PairResult]:
        return [p for p in self.pairs.values() if not p.ok]

    @property
    def ok(self) -> bool:
        return not self.violations


def _ping_cmd(vm: dict, ip: str, count: int) -> list[str]:
    return ["ip", "netns", "exec", vm["netns"], "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", ip]


def _ping_many(vms: dict[str, dict], pairs: list[tuple[str, str]], count: int = 3) -> dict[tuple[str, str], bool]:
    """Run the pings of `pairs` concurrently (a failing ping costs a timeout; sequentially 30 of
    them would take half a minute)."""
    procs = {
        (a, b): subprocess.Popen(_ping_cmd(vms[a], vms[b]["ip"], count), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for a, b in pairs
    }
    return {k: p.wait(timeout=30) == 0 for k, p in procs.items()}


def _neighbour_mac(vm: dict, ip: str) -> str | None:
    out = ns.run(["ip", "neigh", "show", ip, "dev", vm["dev"]], netns=vm["netns"], check=False).stdout
    words = out.split()
    return words[words.index("lladdr") + 1].lower() if "lladdr" in words else None


def _probe_l2(vms: dict[str, dict]) -> dict[str, set[str]]:
    """Every VM sends a broadcast and a unicast to each other VM's MAC, tagged with its name;
    returns, per VM, the names whose frames it received."""
    nonce = secrets.token_hex(4)
    listeners: dict[str, subprocess.Popen] = {}
    try:
        for name, vm in vms.items():
            listeners[name] = subprocess.Popen(
                ["ip", "netns", "exec", vm["netns"], sys.executable, "-m", "ovsflow.lab.probe", "listen", vm["dev"]],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        for name, proc in listeners.items():
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"probe listener in {vms[name]['netns']} did not start")
        for name, vm in vms.items():
            dsts = ["ff:ff:ff:ff:ff:ff"] + sorted({v["mac"] for n, v in vms.items() if n != name})
            ns.run([sys.executable, "-m", "ovsflow.lab.probe", "send", vm["dev"], f"{nonce}:{name}", *dsts], netns=vm["netns"])
        time.sleep(0.5)  # let the last frames cross the tunnels
    finally:
        for proc in listeners.values():
            proc.terminate()
    received: dict[str, set[str]] = {}
    for name, proc in listeners.items():
        out, _ = proc.communicate(timeout=10)
        tags = {line.strip() for line in out.splitlines()}
        received[name] = {t.split(":", 1)[1] for t in tags if t.startswith(nonce + ":")}
    return received


def routed_networks(state: LabState) -> dict[str, set[str]]:
    """Network -> the networks its router joins it to (itself included); a network without a
    router reaches only itself. Read from the lab's topology file (none: no routers)."""
    from ovsflow.model import load_topology

    try:
        topo = load_topology(state.topology)
    except Exception:  # a lab without a readable topology file: nothing is routed
        return {}
    out: dict[str, set[str]] = {}
    for router in topo.routers.values():
        for net in router.networks:
            out[net] = set(router.networks)
    return out


def run_check(state: LabState) -> CheckResult:
    t0 = time.monotonic()
    vms = state.vms
    names = sorted(vms)
    pairs = [(a, b) for a in names for b in names if a != b]
    same = {(a, b): vms[a]["network"] == vms[b]["network"] for a, b in pairs}
    routes = routed_networks(state)

    def reach(port: str) -> set[str]:
        return routes.get(vms[port]["network"], {vms[port]["network"]})

    routed = {(a, b): not same[(a, b)] and vms[b]["network"] in reach(a) for a, b in pairs}
    with_ip = [(a, b) for a, b in pairs if vms[a]["ip"] and vms[b]["ip"] and vms[a]["ip"] != vms[b]["ip"]]

    # 1. same-network pings first (their ARP floods teach br-tun's table 20), retried once: the
    #    userspace datapath drops a tunnel packet while it resolves the remote VTEP's MAC.
    same_ip = [p for p in with_ip if same[p]]
    ping = _ping_many(vms, same_ip)
    retry = [p for p, ok in ping.items() if not ok]
    if retry:
        ping.update(_ping_many(vms, retry, count=5))
    # 2. cross-network pings, all at once; routed ones that failed retried once (as above)
    ping.update(_ping_many(vms, [p for p in with_ip if not same[p]]))
    retry = [p for p in with_ip if routed[p] and not ping[p]]
    if retry:
        ping.update(_ping_many(vms, retry, count=5))
    # 3. marked L2 frames
    received = _probe_l2(vms)

    results: dict[tuple[str, str], PairResult] = {}
    for a, b in pairs:
        r = PairResult(a, b, same[(a, b)], ping.get((a, b)), None, a in received[b], routed=routed[(a, b)])
        ip = vms[b]["ip"]
        local_owners = [n for n in names if vms[n]["network"] in reach(a) and vms[n]["ip"] == ip]
        if r.ping is not None:
            r.neighbour_mac = _neighbour_mac(vms[a], ip) if r.ping else None
        if r.same_network:
            if r.ping is False:
                r.violations.append(f"ping {ip} failed")
            if r.ping and r.neighbour_mac != vms[b]["mac"]:
                r.violations.append(f"{ip} answered from {r.neighbour_mac}, expected {vms[b]['mac']}")
            if not r.l2:
                r.violations.append("probe frames did not arrive")
        else:
            if r.l2:
                r.violations.append(f"{b} received {a}'s frames across networks")
            if r.routed:
                if r.ping is False:
                    r.violations.append(f"routed ping {ip} failed")
            elif vms[a]["ip"] == ip:
                r.note = "same IP as source"
            elif r.ping and not local_owners:
                r.violations.append(f"ping {ip} answered across networks (from {r.neighbour_mac})")
            elif r.ping and local_owners:
                owner_macs = {vms[n]["mac"] for n in local_owners}
                on_link = [n for n in local_owners if vms[n]["network"] == vms[a]["network"]]
                r.note = f"{ip} answered by {'/'.join(local_owners)} ({'own network' if on_link else 'own router'})"
                if on_link and r.neighbour_mac not in owner_macs:
                    r.violations.append(f"{ip} answered from {r.neighbour_mac}, not by {'/'.join(local_owners)}")
        results[(a, b)] = r
    return CheckResult(names, results, time.monotonic() - t0)


def cell(r: PairResult) -> str:
    if not r.ok:
        return "FAIL"
    if r.same_network:
        return "ok" if r.ping is not None else "ok(l2)"
    if r.routed:
        return "rtd"
    return "iso*" if r.note else "iso"


def format_matrix(result: CheckResult, vms: dict[str, dict]) -> str:
    """The matrix as text: rows send, columns receive. ok = reached (ping + L2 probe); iso = isolated
    (no ping reply, no probe frame); iso* = the IP answered inside the sender's own network."""
    names = result.ports
    label = {n: f"{n} ({vms[n]['network']})" for n in names}
    w0 = max(len(label[n]) for n in names) + 1
    w = max(6, max(len(n) for n in names) + 1)
    lines = [" " * w0 + "".join(n.rjust(w) for n in names)]
    for a in names:
        row = label[a].ljust(w0)
        for b in names:
            row += ("." if a == b else cell(result.pairs[(a, b)])).rjust(w)
        lines.append(row)
    lines.append("")
    lines.append("ok = same network, ping answered by the right MAC and probe frames arrived; "
                 "rtd = networks of one router, the ping routed, no probe frame arrived; "
                 "iso = different networks, nothing arrived; iso* = IP also used in the sender's own network, "
                 "answered there, nothing arrived at the other tenant")
    for r in result.pairs.values():
        if r.note and r.ok:
            lines.append(f"  {r.src} -> {r.dst}: {r.note}")
    for r in result.violations:
        lines.append(f"VIOLATION {r.src} -> {r.dst}: {'; '.join(r.violations)}")
    n_same = sum(1 for r in result.pairs.values() if r.same_network)
    lines.append(
        f"{len(result.pairs)} pairs ({n_same} same-network, {len(result.pairs) - n_same} cross-network), "
        f"{len(result.violations)} violations, {result.seconds:.1f}s"
    )
    return "\n".join(lines)
