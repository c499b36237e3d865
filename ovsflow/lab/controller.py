"""A `ryu-manager ovsflow.app` process for labs, tests and benchmarks: start, stop, crash, read its log.

One log file lasts over restarts; `mark()` is a byte offset, so "what did the app say since X" is a
slice of that file. With `stamped=True` every log line starts with its time.time() (a logging
config handed to ryu-manager), which is what the benchmarks time things by.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RYU_MANAGER = Path(sys.executable).with_name("ryu-manager")
LOG_CONFIG = """[loggers]
keys=root
[handlers]
keys=file
[formatters]
keys=stamped
[logger_root]
level=INFO
handlers=file
[handler_file]
class=FileHandler
args=({path!r}, 'a')
formatter=stamped
[formatter_stamped]
format=%(created).6f %(message)s
"""
_STAMP = re.compile(r"^(\d{9,}\.\d+) (.*)$")


class ControllerTimeout(TimeoutError):
    """The app did not log what was waited for in time (the message has the log's tail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RyuManager:
    """One `ryu-manager ovsflow.app` (inside `netns` if given) listening on host:port."""

    def __init__(self, log: Path, topology: Path | None, *, port: int, host: str = "127.0.0.1",
                 netns: str | None = None, env: dict[str, str] | None = None, stamped: bool = False,
                 args: tuple[str, ...] = (), detach: bool = False) -> None:
        self.log, self.topology, self.port, self.host, self.netns = Path(log), topology, port, host, netns
        self.args = tuple(args)  # more ryu-manager options, e.g. ("--ovsflow-audit-interval", "1")
        self.env = dict(os.environ, **(env or {}))
        self.stamped = stamped
        self.detach = detach  # its own session: it outlives the command that started it (`lab up --controller`)
        self.out = self.log.with_suffix(".out") if stamped else self.log  # stdout/stderr
        self.proc: subprocess.Popen | None = None
        self.offset = 0
        self.started = 0.0

    def start(self) -> RyuManager:
        cmd = [str(RYU_MANAGER), "ovsflow.app", "--ofp-listen-host", self.host, "--ofp-tcp-listen-port", str(self.port)]
        if self.topology is not None:
            cmd += ["--ovsflow-topology", str(self.topology)]
        cmd += self.args
        if self.stamped:
            conf = self.log.with_suffix(".logconf")
            conf.write_text(LOG_CONFIG.format(path=str(self.log)))
            cmd += ["--log-config-file", str(conf)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]  # ip execs: the pid is ryu-manager's
        self.offset = self.mark()
        with open(self.out, "ab") as out:
            self.started = time.time()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=self.detach)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to the switches (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def scrape(self, address: str, port: int, timeout: float = 10.0) -> str:
        """GET the app's Prometheus endpoint (--ovsflow-metrics-port), from the app's namespace."""
        code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                f"'http://{address}:{port}/metrics', timeout={timeout}).read().decode())")
        cmd = [sys.executable, "-c", code]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout + 5).stdout

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def text(self, since: int | None = None) -> str:
        """The log since `since` (a mark()), else since the last start()."""
        if not self.log.exists():
            return ""
        return self.log.read_bytes()[self.offset if since is None else since:].decode(errors="replace")

    def lines(self, since: int | None = None) -> list[tuple[float, str]]:
        """(time, message) per log line; needs `stamped=True`."""
        return [(float(m.group(1)), m.group(2)) for ln in self.text(since).splitlines() for m in [_STAMP.match(ln)] if m]

    def _poll(self, find, count: int, timeout: float, since: int | None, what: str):
        deadline = time.monotonic() + timeout
        while True:
            found = find()
            if len(found) >= count:
                return found
            if self.proc is None or self.proc.poll() is not None:
                out = self.out.read_text(errors="replace")[-3000:] if self.out.exists() else ""
                raise RuntimeError(f"ryu-manager exited while waiting for {what}:\n{out}")
            if time.monotonic() > deadline:
                raise ControllerTimeout(f"no {count}x {what} in the app's log within {timeout} s:\n{self.text(since)[-3000:]}")
            time.sleep(0.02)

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0, since: int | None = None) -> list[re.Match]:
        """Every match of `pattern` in the log (since `since`, else this start), once there are `count`."""
        rx = re.compile(pattern)
        return self._poll(lambda: list(rx.finditer(self.text(since))), count, timeout, since, repr(pattern))

    def wait(self, pattern: str, count: int = 1, timeout: float = 300.0, since: int | None = None) -> list[tuple[float, re.Match]]:
        """The first `count` stamped lines matching `pattern`, with each line's time."""
        rx = re.compile(pattern)
        return self._poll(lambda: [(t, m) for t, ln in self.lines(since) for m in [rx.search(ln)] if m],
                          count, timeout, since, repr(pattern))[:count]


@contextlib.contextmanager
def controlled_lab(topology_file: Path, name: str, app_log: Path, *, ctl_ip: str, ctl_port: int = 6653,
                   stamped: bool = False, echo=print, timeout: float = 120.0, args: tuple[str, ...] = ()):
    """A lab whose flows come from a live `ryu-manager ovsflow.app`, yielding (Exercise, RyuManager).

    The lab comes up with no flows; the app runs in the underlay namespace on `ctl_ip` (an address
    the topology's VTEP subnet has room for), every host's bridges and ports get the app as their
    controller, and this returns once all of them are programmed. On exit (also after a failure)
    the app stops before the lab goes down, since its namespace goes with the lab. `args`: more
    ryu-manager options (e.g. the metrics port).
    """
    from ..model import load_topology
    from . import lab as labmod
    from . import netns as ns
    from .exercise import Exercise

    topo = load_topology(topology_file)
    if ctl_ip in {h.vtep for h in topo.hosts.values()}:
        raise ValueError(f"{ctl_ip} is a VTEP of {topology_file}: the controller needs an address of its own")
    app: RyuManager | None = None
    try:
        state = labmod.up(topo, name, program="none")
        ul = state.underlay["netns"]
        ns.addr_add(state.underlay["bridge"], f"{ctl_ip}/{state.underlay.get('prefixlen', '24')}", ul)
        app = RyuManager(app_log, topology_file, port=ctl_port, host=ctl_ip, netns=ul, stamped=stamped, args=args).start()
        app.wait_for(r"topology \S+ loaded \(start\)", timeout=timeout)
        lab = Exercise(state, echo=echo)
        for host in state.hosts:
            lab.plumb(host, topo, f"tcp:{ctl_ip}:{ctl_port}")
        labmod.warm_underlay(state, echo)  # new tunnel ports flushed OVS's tunnel neighbour cache
        app.wait_for(r"\) connect: updated", count=2 * len(state.hosts), timeout=timeout)
        yield lab, app
    finally:
        try:
            if app is not None:
                app.stop()
        finally:
            labmod.down(name)


# --- `ovsflow lab up TOPOLOGY --controller`: a lab run by the live controller, kept up ----------------
CONNECTED = r"switch \w+ \((\S+)\) connect: (updated|in sync)"


def controller_address(state) -> str:
    """An address for the controller on the lab's underlay: the highest of its subnet no VTEP uses."""
    import ipaddress

    plen = state.underlay.get("prefixlen", "24")
    vteps = {h["vtep"] for h in state.hosts.values()}
    net = ipaddress.ip_network(f"{next(iter(vteps))}/{plen}", strict=False)
    for addr in reversed(list(net.hosts()) if net.num_addresses <= 65536 else []):
        if str(addr) not in vteps:
            return str(addr)
    raise ValueError(f"no free address for the controller in {net}")


def up_with_controller(topology_file: Path, name: str, *, port: int = 6653, metrics_port: int | None = None,
                       args: tuple[str, ...] = (), log=print, timeout: float = 120.0):
    """`lab up --controller`: the lab with no flows, `ryu-manager ovsflow.app` in its underlay
    namespace (reachable from every host over its VTEP link), every host's bridges and ports
    ensured through OVSDB (`ovsflow ovsdb-ensure`'s code) with the app as their controller; returns
    the LabState once every switch reported in sync. The app runs on after this returns (its own
    session); `lab down` stops it (`stop_controller`). On failure everything is removed again."""
    import warnings

    from ..model import load_topology
    from . import lab as labmod
    from . import netns as ns

    with warnings.catch_warnings():  # python-ovs imports eventlet, which warns
        warnings.simplefilter("ignore")
        from ..ovsdb import ensure_from_topology

    topology_file = Path(topology_file).resolve()
    topo = load_topology(topology_file)
    state = labmod.up(topo, name, program="none", log=log)
    try:
        ip = controller_address(state)
        ul = state.underlay["netns"]
        ns.addr_add(state.underlay["bridge"], f"{ip}/{state.underlay.get('prefixlen', '24')}", ul)
        target = f"tcp:{ip}:{port}"
        if metrics_port:  # on the controller's lab address only
            args = (*args, "--ovsflow-metrics-port", str(metrics_port), "--ovsflow-metrics-address", ip)
        app = RyuManager(Path(state.workdir) / "controller.log", topology_file, port=port, host=ip, netns=ul,
                         args=args, detach=True).start()
        assert app.proc is not None
        state.underlay.update(controller=target, controller_pid=str(app.proc.pid), controller_log=str(app.log))
        state.save()
        log(f"controller: ryu-manager ovsflow.app (pid {app.proc.pid}) on {target} in netns {ul}; log {app.log}")
        app.wait_for(r"topology \S+ loaded \(start\)", timeout=timeout)
        for host, info in state.hosts.items():
            changes = ensure_from_topology(str(topology_file), host, f"unix:{info['ovs_dir']}/db.sock", target,
                                           topo.inactivity_probe_ms, "netdev")
            log(f"host {host}: ovsdb-ensure --controller {target}: {len(changes.lines)} change(s)")
        labmod.warm_underlay(state, log)  # new tunnel ports flushed OVS's tunnel neighbour cache
        bridges = {f"{h}/{b}" for h, info in state.hosts.items() for b in (info["bridge_int"], info["bridge_tun"])}
        deadline = time.monotonic() + timeout
        while True:
            synced = {m.group(1) for m in re.finditer(CONNECTED, app.text())}
            if bridges <= synced:
                break
            if time.monotonic() > deadline:
                raise ControllerTimeout(f"switches not in sync within {timeout} s: {sorted(bridges - synced)}\n"
                                        f"{app.text()[-3000:]}")
            if app.proc.poll() is not None:
                raise RuntimeError(f"ryu-manager exited:\n{app.text()[-3000:]}")
            time.sleep(0.05)
        log(f"controller: all {len(bridges)} switches in sync")
        return state
    except BaseException:
        stop_controller(state)
        labmod.down(name, log=log)
        raise


def _is_app(pid: int) -> bool:
    try:
        return b"ovsflow.app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_controller(state, timeout: float = 10.0) -> bool:
    """Stop the controller `lab up --controller` started (SIGTERM, then SIGKILL); False if none ran."""
    pid = int(state.underlay.get("controller_pid", 0) or 0)
    if not pid or not _is_app(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_app(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_app(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def app_report(log_text: str) -> list[str]:
    """What the app did per switch, from its log: one line per reconcile, in order."""
    rx = re.compile(r"switch (\w+) \((\S+)\) (\w[\w ]*?): (updated|in sync), (.*?); program")
    return [f"{m.group(2):14} {m.group(3)}: {m.group(4)}, {m.group(5)}" for m in rx.finditer(log_text)]
