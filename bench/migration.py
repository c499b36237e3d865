"""Benchmark 6: the ping gap while a VM moves to another host, with the live controller.

The lab is labs/06-migration (hv1/hv2/hv3; blue = VXLAN l2pop, red = VXLAN flood-and-learn; every
network keeps a VM on every host, so a move changes only the flows that say where the moved VM is),
brought up with no flows; `ryu-manager ovsflow.app` runs in the lab's underlay namespace on
192.0.2.254 (as tests/test_lab_migration.py starts it) and programs all six bridges, watching a
copy of the topology file. A VM on hv1 pings the moving VM every 10 ms (`ping -D -i 0.01`); the gap
is the longest silence between two echo replies in that ping's output.

Per network mode (blue: vm2 pinged by vm1; red: vm5 pinged by vm4), N rounds (quick: 1), each of:

  file    - the VM is re-plugged into the other host (`Exercise.replug`: its veth leaves the old
            br-int, a new one is plugged into the new host's br-int with the ofport ovsflow's
            program uses), then the topology file is edited (the port's `host:`) and the app finds
            the change by itself (inotify on the file's directory; polling every 50 ms is its
            fallback);
  sighup  - the same move back, with SIGHUP sent to the app right after the file write;
  replug  - the floor: the VM re-plugged into the host it is on, same ofport, nothing else changes
            (no file edit, no flow-mod: the program already fits). No program change can make a
            move faster than this; the difference to `file`/`sighup` is what ovsflow adds.

The two moves' order alternates per round, so each trigger moves both ways (hv2 -> hv3, hv3 -> hv2).
In red (learn) the moved VM announces itself with five gratuitous ARPs over 350 ms (the schedule of
labs/06-migration/check.py, after QEMU's self-announce; each ARP its own `arping`), started once every
affected switch is updated (for `replug`: right after the re-plug), as a VM resuming on a ready
port would. The live controller also tells the switches of the network, with the update, that the
VM moved (its learned entry deleted, a learned-style entry to the new VTEP added).

Each move's silence is cut along the timeline into parts that add up to it (`split`): the part
inside the re-plug call (the VM without a port; the call also does work before the unplug and
after the port forwards, so its whole duration is reported apart), the part from the topology file
write to the last affected switch's barrier reply (the app's log carries timestamps; also split
into write -> the app starts its reload, and reload -> last barrier reply), and the rest (the ping
interval, the time after the last update until the first reply: in red, learning the
announcement). The app's log also says which switches were updated.

  python -m bench migration [--quick]
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovsflow.lab.controller import RyuManager

from .app import affected_bridges, med

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "06-migration"
CTL_IP, CTL_PORT = "192.0.2.254", 6653  # on the lab's underlay bridge; no VTEP uses it
MOVERS = {"l2pop": "vm2", "learn": "vm5"}  # mode -> the VM that moves (its pinger is on hv1)
HOME, AWAY = "hv2", "hv3"
LEAD_IN_S = 0.5  # ping before the move
TAIL_S = 0.5  # ping after it resumed (a learn() entry flipping back would show as a second gap)
RESUME_TIMEOUT_S = 10.0
GOAL_S = 0.2
_UPDATE = re.compile(r"\((\w+)/(br-\w+)\) (file change|SIGHUP): updated, (.*?) flows=")
_RELOAD = re.compile(r"topology \S+ loaded \((file change|SIGHUP)\).* compiled in ([\d.]+) ms, (\d+) to update")


def lab_check():
    """labs/06-migration/check.py as a module: its file edit, announcement and document helpers."""
    spec = importlib.util.spec_from_file_location("lab06_check", LAB / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need their module registered
    spec.loader.exec_module(module)
    return module


def announce(lab, check, port: str) -> subprocess.Popen:
    """The moved VM's gratuitous ARPs on the lab's schedule (labs/06-migration/check.py)."""
    return check.announce_start(lab, port)


def one_move(lab, app: RyuManager, check, mode: str, kind: str, dst: str, workdir: Path) -> dict:
    """Move (or, kind "replug", re-plug in place) the mode's VM to `dst` under a 10 ms ping."""
    from ovsflow.compiler import compile_host
    from ovsflow.lab.exercise import ping_gap, ping_replies
    from ovsflow.model import load_topology_data

    port = MOVERS[mode]
    pinger = check.PINGER[port]
    src = lab.vm(port)["host"]
    before = check.document(lab)
    after = json.loads(json.dumps(before))
    after["ports"][port]["host"] = dst
    old_t = load_topology_data(before, lab.state.topology)
    new_t = load_topology_data(after, lab.state.topology)
    assert new_t.networks[new_t.ports[port].network].mode == mode
    affected = affected_bridges(old_t, new_t)
    ofport = compile_host(new_t, dst, "netdev").bridge("int").port(lab.vm(port)["iface"]).ofport
    sample: dict = {"mode": mode, "kind": kind, "port": port, "src": src, "dst": dst, "load1": os.getloadavg()[0],
                    "affected": sorted("/".join(x) for x in affected)}
    out = workdir / f"ping-{mode}-{kind}-{src}-{dst}-{time.monotonic_ns()}.txt"
    ping = lab.start_ping(pinger, lab.vm(port)["ip"], out)
    announcer = None
    t_write = None
    try:
        time.sleep(LEAD_IN_S)
        mark = app.mark()
        t0 = time.time()
        lab.replug(port, dst, ofport)
        t1 = time.time()
        t_ready = t1
        if kind != "replug":
            check.set_host_in_file(lab.state.topology, port, dst)
            t_write = time.time()
            if kind == "sighup":
                app.proc.send_signal(signal.SIGHUP)
            found = app.wait(_UPDATE.pattern, count=len(affected), since=mark, timeout=60)
            t_ready = max(t for t, _ in found)
            (t_loaded, m), = app.wait(_RELOAD.pattern, since=mark, timeout=5)
            t_reload = t_loaded - float(m.group(2)) / 1000
            sample.update(trigger_seen=m.group(1), to_update=int(m.group(3)), compile_s=float(m.group(2)) / 1000,
                          updated=sorted(f"{mm.group(1)}/{mm.group(2)}" for _, mm in found),
                          changes={f"{mm.group(1)}/{mm.group(2)}": mm.group(4) for _, mm in found},
                          write_to_reload_s=t_reload - t_write, reload_to_last_s=t_ready - t_reload,
                          write_to_last_s=t_ready - t_write)
        if mode == "learn":  # "I am here now": QEMU's self-announce after the VM resumes
            announcer = announce(lab, check, port)
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while time.monotonic() < deadline and not any(t > t_ready for t, _ in ping_replies(out.read_text())):
            time.sleep(0.02)
        time.sleep(TAIL_S)
    finally:
        lab.stop_ping(ping)
        if announcer is not None:
            announcer.wait(10)
    text = out.read_text()
    times = sorted(t for t, _ in ping_replies(text))
    gap = ping_gap(text)
    sample.update(replug_s=t1 - t0, replies_before=sum(1 for t in times if t <= t0),
                  replies_after_ready=sum(1 for t in times if t > t_ready), resumed=any(t > t_ready for t in times),
                  gap_s=gap if gap is not None else float("inf"))
    if kind == "replug":  # nothing else changing: the app must not have pushed anything
        sample["app_updates"] = len([1 for _, ln in app.lines(mark) if _UPDATE.search(ln) or _RELOAD.search(ln)])
    sample.update(split(times, t0, t1, t_write, t_ready))
    out.unlink(missing_ok=True)
    return sample


def split(times: list[float], t0: float, t1: float, t_write: float | None, t_ready: float) -> dict:
    """The move's silence (the longest between two replies that overlaps the re-plug call ..
    last switch updated) cut along the timeline: the part inside the re-plug call, the part from
    the file write to the last switch's update, and the rest (the ping interval, the file write
    itself, the time after the last update until the first reply). The parts add up to it."""
    end = max(t1, t_ready)
    pairs = [(a, b) for a, b in itertools.pairwise(times) if b > t0 and a < end]
    if not pairs or times[-1] <= t_ready:
        return {}
    a, b = max(pairs, key=lambda p: p[1] - p[0])

    def inside(lo: float, hi: float) -> float:
        return max(0.0, min(hi, b) - max(lo, a))

    replug = inside(t0, t1)
    program = inside(t_write, t_ready) if t_write is not None else 0.0
    return {"move_gap_s": b - a, "silent_from_s": a - t0, "back_at_s": b - t0, "ready_at_s": t_ready - t0,
            "write_at_s": (t_write - t0) if t_write is not None else None, "replug_end_s": t1 - t0,
            "replug_in_gap_s": replug, "program_in_gap_s": program, "rest_s": (b - a) - replug - program,
            "first_reply_after_ready_s": b - t_ready}


def summarize(mode: str, samples: list[dict], rounds: int) -> dict:
    def pick(kind: str, key: str) -> list[float]:
        return [s[key] for s in samples if s["kind"] == kind and key in s and s.get("resumed")]

    port = MOVERS[mode]
    net = {"l2pop": "blue, VXLAN l2pop", "learn": "red, VXLAN flood-and-learn + 5 gratuitous ARPs"}[mode]
    figures: dict = {}
    for kind, title in (("file", "file poll"), ("sighup", "write + SIGHUP")):
        figures[f"{title}: ping gap (s, median [min-max]; goal < 0.2)"] = med(pick(kind, "gap_s"))
        figures[f"{title}:   silence inside the re-plug call (s)"] = med(pick(kind, "replug_in_gap_s"))
        figures[f"{title}:   silence from file write to last switch updated (s)"] = med(pick(kind, "program_in_gap_s"))
        figures[f"{title}:   the rest (s)"] = med(pick(kind, "rest_s"))
        figures[f"{title}: re-plug call, whole (s)"] = med(pick(kind, "replug_s"))
        figures[f"{title}: file write -> last switch updated, app log (s)"] = med(pick(kind, "write_to_last_s"))
        figures[f"{title}:   write -> app starts the reload (s)"] = med(pick(kind, "write_to_reload_s"))
        figures[f"{title}:   reload start -> last switch's barrier reply (s)"] = med(pick(kind, "reload_to_last_s"))
        figures[f"{title}: last switch updated -> first reply (s)"] = med(pick(kind, "first_reply_after_ready_s"))
    figures["re-plug alone, nothing else changes (floor): ping gap (s)"] = med(pick("replug", "gap_s"))
    figures["re-plug alone:   silence inside the re-plug call (s)"] = med(pick("replug", "replug_in_gap_s"))
    figures["re-plug alone:   the rest (s)"] = med(pick("replug", "rest_s"))
    figures["re-plug alone: re-plug call, whole (s)"] = med(pick("replug", "replug_s"))
    for kind, title in (("file", "file poll"), ("sighup", "write + SIGHUP")):
        gaps, floor = pick(kind, "gap_s"), pick("replug", "gap_s")
        if gaps and floor:
            figures[f"{title}: median gap minus the floor's (s, what ovsflow adds)"] = statistics.median(gaps) - statistics.median(floor)
    moved = [s for s in samples if s["kind"] != "replug"]
    figures["switches updated per move (app log)"] = sorted({", ".join(s.get("updated", [])) for s in moved})
    figures["moves whose ping resumed / moves"] = [sum(1 for s in samples if s["resumed"]), len(samples)]
    figures["moves whose longest silence was not the move's"] = sum(
        1 for s in samples if s["resumed"] and "move_gap_s" in s and s["gap_s"] > s["move_gap_s"] + 1e-6)
    figures["app updates during the floor's re-plugs"] = sum(s.get("app_updates", 0) for s in samples)
    figures["1-minute load average (median [min-max])"] = med([s["load1"] for s in samples])
    return {
        "benchmark": "migration",
        "case": f"{mode}: {port} ({net}) moved {HOME} <-> {AWAY}, pinged every 10 ms from hv1; "
                f"{rounds} moves by file poll, {rounds} by SIGHUP, {rounds} re-plugs in place",
        "figures": figures,
        "goal": "ping gap < 200 ms (anchors: 5-30 s in Neutron-based and OVN clouds)",
        "raw": {"samples": samples, "goal_s": GOAL_S},
    }


def run(quick: bool = False) -> list[dict]:
    from ovsflow.lab.controller import controlled_lab

    rounds = 1 if quick else 8
    check = lab_check()
    work = Path(tempfile.mkdtemp(prefix="ovsflow-bench-migration-", dir="/tmp"))
    topo_file = work / "topology.yaml"
    shutil.copy(LAB / "topology.yaml", topo_file)  # the app watches this copy; the moves edit it
    name = os.environ.get("OVSFLOW_BENCH_LAB") or f"bmg{os.getpid() % 100000}"  # tests pass theirs
    samples: dict[str, list[dict]] = {m: [] for m in MOVERS}
    try:
        with controlled_lab(topo_file, name, work / "ryu.log", ctl_ip=CTL_IP, ctl_port=CTL_PORT, stamped=True,
                            echo=lambda _msg: None) as (lab, app):
            for port in MOVERS.values():
                if not lab.ping(check.PINGER[port], port):
                    raise RuntimeError(f"{check.PINGER[port]} cannot reach {port} before any move")
            wd = work / "pings"
            wd.mkdir()
            for r in range(rounds):
                for mode in MOVERS:
                    first, second = ("file", "sighup") if r % 2 == 0 else ("sighup", "file")
                    samples[mode].append(one_move(lab, app, check, mode, first, AWAY, wd))
                    samples[mode].append(one_move(lab, app, check, mode, "replug", AWAY, wd))
                    samples[mode].append(one_move(lab, app, check, mode, second, HOME, wd))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [summarize(mode, samples[mode], rounds) for mode in MOVERS]
