"""Benchmarks 2-4 for the live controller: `ryu-manager ovsflow.app` against real private OVS.

  bulk     - one host's program (~50,000 flows; --quick ~2,000) installed into empty bridges by the
             app on a switch's first connect vs `ovs-ofctl -O OpenFlow14 add-groups` + `--bundle
             add-flows` of the same flows and groups, in the same run, repetitions interleaved. The
             app is already running with the topology loaded; each repetition detaches the
             bridges' controller (OVS then clears their tables) and attaches it again, so the
             switch connects afresh to empty tables. The app's time runs from the `ovs-vsctl
             set-controller` call to the app's log line saying both bridges are updated (its log
             carries timestamps); its compile step (once per topology load) is reported apart,
             from its first connect after start.
  resync   - controller restart with 10,000 and 50,000 flows installed and nothing changed: flow
             changes seen by an independent `ovs-ofctl monitor watch:!initial` on each bridge
             (must be 0), and the time from the switch's connect to "in sync" with and without
             the compile step, plus wall time from the process start. That last one is mostly
             OVS's reconnect backoff, not the app: OVS 3.1 waited 2, then 4 s between attempts here
             although the Controller rows ask for max_backoff=1000 ms. Also a switch reconnect to
             the running app (the TCP connection killed with `ss -K`): no compile at all.
  latency  - a topology change (a port added to, then removed from, an l2pop network present on
             every host) -> every affected switch updated, with 3 and 10 hosts (a lab brought up
             with hosts only: private OVS per host, no VMs; bridges and ports through ovsflow's
             OVSDB IDL path, `ovsflow.ovsdb.ensure_host`). Measured from the file write to the last
             flow change any affected bridge's monitor reports, and from the app starting its
             reload (log timestamp minus the compile time it logs) to the same moment. The app
             polls the file every 0.2 s and reloads once the file has been still for one poll, so
             the write -> reload part is 0.2-0.4 s by design; SIGHUP right after the write is
             measured too. Unaffected switches must see no change. The reload compiles every
             connected host's program to find the ones that changed (logged as "compiled in");
             that share is reported too.

  python -m bench app [--quick]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ovsflow.lab.controller import RyuManager, free_port


def med(xs: list[float]) -> list[float]:
    """[median, min, max] (the row format's triple)."""
    return [statistics.median(xs), min(xs), max(xs)] if xs else [float("nan")] * 3


def App(work: Path, topology: Path, host: str, port: int, netns: str | None = None) -> RyuManager:
    """The benchmarks' app: ryu-manager with time-stamped log lines in work/ryu.log."""
    return RyuManager(work / "ryu.log", topology, port=port, host=host, netns=netns, stamped=True)


class Monitor:
    """`ovs-ofctl monitor BRIDGE watch:!initial`: every later flow change on the bridge, by any
    connection, stamped (time.time()) as it arrives."""

    def __init__(self, mgmt: str, env: dict[str, str], label: str) -> None:
        self.label = label
        self.events: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(["ovs-ofctl", "monitor", mgmt, "watch:!initial"], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **env})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from ovsflow.program import COOKIE_LEARNED

        learned = f"cookie={COOKIE_LEARNED:#x}"
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "event=" in line and learned not in line:  # learn() entries are the switch's own
                self.events.append((time.time(), line.strip()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.thread.join(10)


def start_monitors(items: list[tuple[str, dict[str, str], str]]) -> list[Monitor]:
    mons = [Monitor(*it) for it in items]
    time.sleep(0.5)  # connected and registered before anything happens
    return mons


class Rig:
    """One private OVS (own netns) holding one host's bridges, pointed at an app in that netns."""

    def __init__(self, topo_data: dict, host: str, work: Path) -> None:
        from ovsflow.compiler import compile_host
        from ovsflow.model import load_topology

        self.work = work
        self.topo_file = work / "topology.json"
        self.topo_file.write_text(json.dumps(topo_data))
        self.program = compile_host(load_topology(self.topo_file), host)
        self.host = host
        self.ns = f"oba{os.getpid() % 100000}{work.name[-4:]}"
        self.ovs = None
        self.app: App | None = None
        self.port = free_port()
        self.target = f"tcp:127.0.0.1:{self.port}"

    def __enter__(self) -> Rig:
        from ovsflow import ovsdb
        from ovsflow.lab import netns as nsmod
        from ovsflow.lab.ovs import OvsInstance

        nsmod.netns_add(self.ns)
        self.ovs = OvsInstance("bench", self.work / "ovs", self.ns)
        self.ovs.start()
        for p in self.program.bridge("int").ports:
            if not p.type:
                nsmod.veth_add(p.name, self.ns, f"b{p.ofport}", self.ns)
        ovsdb.ensure_host(f"unix:{self.ovs.db_sock}", self.program, controller=self.target, datapath_type="netdev")
        self.backoff()
        self.app = App(self.work, self.topo_file, "127.0.0.1", self.port, self.ns)
        return self

    def backoff(self) -> None:
        for b in self.bridges:
            self.ovs.vsctl("set", "Controller", b, "max_backoff=1000")

    def __exit__(self, *exc: object) -> None:
        from ovsflow.lab import netns as nsmod

        try:
            if self.app is not None:
                self.app.stop()
        finally:
            if self.ovs is not None:
                self.ovs.stop()
            for pid in nsmod.netns_pids(self.ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            nsmod.netns_delete(self.ns)

    @property
    def bridges(self) -> list[str]:
        return [b.name for b in self.program.bridges]

    @property
    def flows(self) -> int:
        return sum(len(b.flows) for b in self.program.bridges)

    def monitors(self) -> list[Monitor]:
        return start_monitors([(self.ovs.mgmt(b), self.ovs.env, b) for b in self.bridges])

    def static_flows(self) -> int:
        from ovsflow.program import COOKIE_STATIC

        return sum(len(self.ovs.dump_flows(b, f"cookie={COOKIE_STATIC:#x}/-1")) for b in self.bridges)

    def connect_lines(self, since: int, kind: str = r"updated|in sync", timeout: float = 300.0) -> list[tuple[float, re.Match]]:
        pattern = (rf"\({self.host}/(br-\w+)\) connect: ({kind}), added=(\d+) modified=(\d+) deleted=(\d+) .*"
                   r"program ([\d.]+) ms, read ([\d.]+) ms .* diff ([\d.]+) ms, bundle ([\d.]+) ms, total ([\d.]+) ms")
        return self.app.wait(pattern, count=len(self.bridges), timeout=timeout, since=since)

    def connected_at(self, since: int) -> float:
        """When the first of the host's bridges connected (the second one's handshake may wait
        behind the first one's compile step: eventlet runs one green thread at a time)."""
        found = self.app.wait(rf"\({self.host}/br-\w+\) connected from", count=len(self.bridges), since=since)
        return min(t for t, _ in found)


# --- (a) bulk install ---------------------------------------------------------------------------


def bulk(n_flows: int, reps: int, base: Path) -> dict:
    from ovsflow.ofctl import flow_file, group_lines

    from .install import topology

    work = Path(tempfile.mkdtemp(prefix="bulk", dir=base))
    with Rig(topology(n_flows), "hv0", work) as rig:
        env = {**os.environ, **rig.ovs.env}
        files = {}
        for b in rig.program.bridges:
            files[b.name] = (work / f"{b.name}.flows", work / f"{b.name}.groups")
            files[b.name][0].write_text(flow_file(b))
            files[b.name][1].write_text("\n".join(group_lines(b)) + "\n")

        def ofctl_load() -> float:
            for b in rig.bridges:
                rig.ovs.ofctl("del-flows", b)
                rig.ovs.ofctl("del-groups", b)
            t = time.perf_counter()
            for b in rig.program.bridges:
                if b.groups:
                    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "add-groups", b.name, str(files[b.name][1])], env=env, check=True)
                subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", b.name, str(files[b.name][0])],
                               env=env, check=True)
            return time.perf_counter() - t

        def app_load() -> tuple[float, list[tuple[float, re.Match]]]:
            mark = rig.app.mark()
            for b in rig.bridges:  # removing the last controller clears the bridge (docs/facts.md)
                rig.ovs.vsctl("del-controller", b)
            rig.app.wait(r"switch \w+ disconnected", count=len(rig.bridges), since=mark, timeout=60)
            if rig.static_flows():
                raise RuntimeError("the bridges were not emptied by removing their controller")
            mark = rig.app.mark()
            t = time.time()
            rig.ovs.vsctl(*[a for b in rig.bridges for a in ("--", "set-controller", b, rig.target)][1:])
            found = rig.connect_lines(mark, "updated")
            rig.backoff()
            return max(ts for ts, _ in found) - t, found

        t_start = rig.app.start().started
        first = rig.connect_lines(0, "updated")
        first_wall = max(t for t, _ in first) - t_start
        first_compile = max(float(m.group(6)) for _, m in first) / 1000
        times: dict[str, list[float]] = {"app": [], "ofctl": []}
        app_totals: list[float] = []
        for _ in range(reps):
            t, found = app_load()
            times["app"].append(t)
            app_totals.append(max(float(m.group(10)) for _, m in found) / 1000)
            assert all(int(m.group(3)) == len(rig.program.bridge("int" if m.group(1) == "br-int" else "tun").flows)
                       for _, m in found), [m.group(0) for _, m in found]
            loaded_by_app = rig.static_flows()
            times["ofctl"].append(ofctl_load())
        loaded_by_ofctl = rig.static_flows()
        total = rig.flows
    m_app, m_ofctl = statistics.median(times["app"]), statistics.median(times["ofctl"])
    return {
        "benchmark": "app", "case": f"bulk install: one host, {total} flows, empty bridges, {reps} interleaved reps",
        "figures": {
            "app: set-controller -> both bridges updated (s, median [min-max])": med(times["app"]),
            "app: its own connect -> barrier reply (s, median [min-max])": med(app_totals),
            "ovs-ofctl add-groups + --bundle add-flows (s, median [min-max])": med(times["ofctl"]),
            "app rate / ovs-ofctl --bundle rate (goal >= 0.8)": m_ofctl / m_app,
            "app flows/s": total / m_app,
            "ovs-ofctl flows/s": total / m_ofctl,
            "first connect after start: compile step (s)": first_compile,
            "first connect after start: process start -> both updated (s)": first_wall,
            "ovsflow flows on the switch after app / after ovs-ofctl": [loaded_by_app, loaded_by_ofctl],
        },
        "goal": "app bulk install rate >= 0.8x ovs-ofctl --bundle add-flows",
        "raw": {"times": times, "app_totals": app_totals, "flows": total, "first_compile_s": first_compile},
    }


# --- (b) no-op resync ---------------------------------------------------------------------------


def resync(n_flows: int, reps: int, base: Path) -> dict:
    from .install import topology

    work = Path(tempfile.mkdtemp(prefix="resync", dir=base))
    samples: dict[str, list[float]] = {k: [] for k in (
        "connect_to_sync", "connect_to_sync_no_compile", "compile", "start_to_sync", "start_to_loaded", "start_to_connect",
        "running_reconnect")}
    mods: list[int] = []
    logged_changes: list[int] = []
    with Rig(topology(n_flows), "hv0", work) as rig:
        rig.app.start()
        rig.connect_lines(0, "updated")
        total = rig.flows
        for _ in range(reps):
            rig.app.stop()
            mons = rig.monitors()
            try:
                t0 = rig.app.start().started
                found = rig.connect_lines(rig.app.offset, "in sync|updated")
                connected = rig.connected_at(rig.app.offset)
                loaded = rig.app.wait(r"topology \S+ loaded \(start\)", since=rig.app.offset)[0][0]
                time.sleep(0.5)
            finally:
                for m in mons:
                    m.stop()
            done = max(t for t, _ in found)
            compile_s = sum(float(m.group(6)) for _, m in found) / 1000
            mods.append(sum(len(m.events) for m in mons))
            logged_changes.append(sum(int(m.group(i)) for _, m in found for i in (3, 4, 5)))
            samples["connect_to_sync"].append(done - connected)
            samples["connect_to_sync_no_compile"].append(done - connected - compile_s)
            samples["compile"].append(compile_s)
            samples["start_to_sync"].append(done - t0)
            samples["start_to_loaded"].append(loaded - t0)
            samples["start_to_connect"].append(connected - t0)
            # the switch reconnects to the running app: kill its TCP connections (ss -K)
            mark = rig.app.mark()
            subprocess.run(["ip", "netns", "exec", rig.ns, "ss", "-K", "dst", "127.0.0.1", "dport", "=", str(rig.port)],
                           capture_output=True, check=False)
            try:
                again = rig.connect_lines(mark, "in sync|updated", timeout=30)
                samples["running_reconnect"].append(max(t for t, _ in again) - rig.connected_at(mark))
            except TimeoutError:
                pass  # this kernel cannot destroy sockets: no sample
    return {
        "benchmark": "app", "case": f"no-op resync: controller restart, one host with {total} flows installed, {reps} reps",
        "figures": {
            "flow changes seen by the switch monitors (goal 0)": max(mods),
            "flows added+modified+deleted in the app's log": max(logged_changes),
            "switch connect -> in sync, incl. compile (s, median [min-max])": med(samples["connect_to_sync"]),
            "switch connect -> in sync, without compile (s)": med(samples["connect_to_sync_no_compile"]),
            "compile step (s)": med(samples["compile"]),
            "process start -> topology loaded (s)": med(samples["start_to_loaded"]),
            "process start -> switch connected (s, OVS's reconnect backoff)": med(samples["start_to_connect"]),
            "process start -> in sync (s)": med(samples["start_to_sync"]),
            "switch reconnect to the running app -> in sync (s)": med(samples["running_reconnect"]),
        },
        "goal": "0 flow-mods and < 2 s (switch connect -> in sync) at 50,000 flows",
        "raw": {**samples, "monitor_events": mods, "logged_changes": logged_changes, "flows": total},
    }


# --- (c) update latency -------------------------------------------------------------------------


def latency_topology(n_hosts: int) -> dict:
    """Every host has a VM in blue (l2pop) and in red (learn); a few more l2pop networks make the
    programs less trivial. Adding a blue port changes every host's program."""
    data: dict = {"hosts": {f"hv{i}": {"vtep": f"192.0.2.{10 + i}"} for i in range(1, n_hosts + 1)},
                  "networks": {"blue": {"vni": 101, "tunnel": "vxlan", "mode": "l2pop", "subnet": "198.51.100.0/24"},
                               "red": {"vni": 102, "tunnel": "vxlan", "mode": "learn", "subnet": "203.0.113.0/24"}},
                  "ports": {}}
    for n in range(8):
        data["networks"][f"t{n}"] = {"vni": 200 + n, "tunnel": "vxlan", "mode": "l2pop", "subnet": f"10.{n}.0.0/16"}
    for i in range(1, n_hosts + 1):
        data["ports"][f"b{i}"] = {"host": f"hv{i}", "network": "blue", "mac": f"02:00:00:00:01:{i:02x}", "ip": f"198.51.100.{i}"}
        data["ports"][f"r{i}"] = {"host": f"hv{i}", "network": "red", "mac": f"02:00:00:00:02:{i:02x}", "ip": f"203.0.113.{i}"}
        for n in range(8):
            for k in range(5):
                data["ports"][f"t{n}-{i}-{k}"] = {"host": f"hv{i}", "network": f"t{n}", "mac": f"02:00:{n:02x}:00:{i:02x}:{k:02x}",
                                                  "ip": f"10.{n}.{i}.{k + 1}"}
    return data


def affected_bridges(old, new) -> set[tuple[str, str]]:
    """(host, bridge) pairs the app updates: those whose flows or groups differ between the two
    topologies, and the br-tun of every host of a network in which a VM moved (the app replaces
    what learn() knew about it there: ovsflow.app `_moves`)."""
    from ovsflow.compiler import compile_host
    from ovsflow.graph import TopologyGraph
    from ovsflow.reconcile import moved_macs

    out = set()
    for h in old.hosts:
        for a, b in zip(compile_host(old, h, "netdev").bridges, compile_host(new, h, "netdev").bridges):
            if (a.flows, a.groups) != (b.flows, b.groups):
                out.add((h, a.name))
    graph = TopologyGraph(new)
    for net in moved_macs(old, new):
        out.update((h, new.hosts[h].bridge_tun) for h in graph.hosts_of(net))
    return out


def latency(n_hosts: int, edits: int, base: Path) -> dict:
    from ovsflow import ovsdb
    from ovsflow.compiler import compile_host
    from ovsflow.lab import lab as labmod
    from ovsflow.lab import netns as nsmod
    from ovsflow.model import load_topology, load_topology_data

    work = Path(tempfile.mkdtemp(prefix=f"lat{n_hosts}", dir=base))
    data = latency_topology(n_hosts)
    topo_file = work / "topology.json"
    topo_file.write_text(json.dumps(data))
    hosts_only = {"hosts": data["hosts"], "networks": {}, "ports": {}}
    name = f"obl{os.getpid() % 10000}{n_hosts}"
    ctl_ip, port = "192.0.2.254", 6653
    app = None
    mons: list[Monitor] = []
    samples: dict[str, list[float]] = {"file": [], "file_from_reload": [], "file_write_to_reload": [],
                                       "sighup": [], "sighup_from_reload": [], "sighup_write_to_reload": [],
                                       "reload_compile": []}
    stray: list[int] = []
    n_affected: list[int] = []
    try:
        state = labmod.up(load_topology_data(hosts_only, str(work / "hosts.json")), name, program="none")
        ul = state.underlay["netns"]
        nsmod.addr_add(state.underlay["bridge"], f"{ctl_ip}/{state.underlay.get('prefixlen', '24')}", ul)
        app = App(work, topo_file, ctl_ip, port, ul)
        app.start()
        app.wait(r"topology \S+ loaded \(start\)")
        topo = load_topology(topo_file)
        for h in topo.hosts:
            inst = labmod.host_ovs(state, h)
            program = compile_host(topo, h)
            ovsdb.ensure_host(f"unix:{inst.db_sock}", program, controller=f"tcp:{ctl_ip}:{port}", datapath_type="netdev")
        app.wait(r"\) connect: updated", count=2 * n_hosts, timeout=300)
        mons = start_monitors([(labmod.host_ovs(state, h).mgmt(b), labmod.host_ovs(state, h).env, f"{h}/{b}")
                               for h in topo.hosts for b in (state.hosts[h]["bridge_int"], state.hosts[h]["bridge_tun"])])
        by_label = {m.label: m for m in mons}
        added = json.loads(json.dumps(data))
        added["ports"]["bnew"] = {"host": "hv1", "network": "blue", "mac": "02:00:00:00:01:ee", "ip": "198.51.100.238"}
        changes = affected_bridges(load_topology_data(data, str(topo_file)), load_topology_data(added, str(topo_file)))
        current = data
        for i in range(2 * edits):
            how = "sighup" if (i // 2) % 2 else "file"  # each way: adds and removes alike
            new = added if current is data else data
            counts = {m.label: len(m.events) for m in mons}
            mark = app.mark()
            tmp = topo_file.with_name(".topology.tmp")
            tmp.write_text(json.dumps(new))
            os.replace(tmp, topo_file)
            t_write = time.time()
            if how == "sighup":
                app.proc.send_signal(signal.SIGHUP)
            why = r"SIGHUP|file change"
            app.wait(rf"\) ({why}): updated", count=len(changes), since=mark, timeout=60)
            deadline = time.monotonic() + 30
            while any(len(by_label[f"{h}/{b}"].events) == counts[f"{h}/{b}"] for h, b in changes):
                if time.monotonic() > deadline:
                    raise TimeoutError("an affected switch's monitor saw no change")
                time.sleep(0.005)
            time.sleep(0.3)  # stragglers
            (t_loaded, m), = app.wait(rf"topology \S+ loaded \(({why})\).* compiled in ([\d.]+) ms", since=mark)
            t_reload = t_loaded - float(m.group(2)) / 1000
            samples["reload_compile"].append(float(m.group(2)) / 1000)
            last = max(t for h, b in changes for t, _ in by_label[f"{h}/{b}"].events[counts[f"{h}/{b}"]:])
            samples[how].append(last - t_write)
            samples[f"{how}_from_reload"].append(last - t_reload)
            samples[f"{how}_write_to_reload"].append(t_reload - t_write)
            stray.append(sum(len(mm.events) - counts[mm.label] for mm in mons
                             if tuple(mm.label.split("/")) not in changes))
            n_affected.append(len(changes))
            current = new
    finally:
        for mm in mons:
            mm.stop()
        if app is not None:
            app.stop()
        labmod.down(name)
    return {
        "benchmark": "app", "case": f"update latency: {n_hosts} hosts, a port added to / removed from an l2pop network on "
                                    f"every host, {2 * edits} edits (half by file change alone, half by file + SIGHUP)",
        "figures": {
            "switches updated per edit (bridges)": max(n_affected),
            "flow changes on unaffected switches": max(stray),
            "file write -> every affected switch updated (s, median [min-max])": med(samples["file"]),
            "  of which write -> app starts the reload (0.2 s poll, file still 1 poll)": med(samples["file_write_to_reload"]),
            "app starts the reload -> every affected switch updated (s; goal < 0.1)": med(
                samples["file_from_reload"] + samples["sighup_from_reload"]),
            "  of which load + compile every connected host's program (s)": med(samples["reload_compile"]),
            "write + SIGHUP -> every affected switch updated (s)": med(samples["sighup"]),
            "  of which write + SIGHUP -> app starts the reload": med(samples["sighup_write_to_reload"]),
        },
        "goal": "< 100 ms from topology change to every affected switch updated (10 hosts)",
        "raw": {**samples, "stray": stray, "affected": n_affected},
    }


def run(quick: bool = False) -> list[dict]:
    base = Path(tempfile.mkdtemp(prefix="ovsflow-bench-app-", dir="/tmp"))
    rows = []
    try:
        if quick:
            rows.append(bulk(2_000, 2, base))
            rows.append(resync(2_000, 1, base))
            rows.append(latency(3, 2, base))
        else:
            rows.append(bulk(50_000, 5, base))
            rows.append(resync(10_000, 3, base))
            rows.append(resync(50_000, 3, base))
            rows.append(latency(3, 6, base))
            rows.append(latency(10, 6, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows
