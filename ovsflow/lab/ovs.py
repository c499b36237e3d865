"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) living in one directory and one netns.

Why private instances: this machine runs no system OVS and has no OVS kernel module, so every
simulated hypervisor gets its own daemons on the userspace (netdev) datapath, and that datapath
allows only one ovs-vswitchd per network namespace (docs/facts.md). All state sits in `workdir`, and the
daemons use OVS's default file names under it, so a learner can type
`OVS_RUNDIR=<workdir> ovs-vsctl show`, `... ovs-ofctl -O OpenFlow14 dump-flows br-tun` or
`... ovs-appctl dpif/show` against the instance with no extra flags.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ..program import OPENFLOW_VERSIONS
from .netns import CommandError, run

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")
OPENFLOW = "OpenFlow14"


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_is(pid: int, program: str) -> bool:
    """True if `pid` is alive and runs `program` (guards against killing a recycled pid)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    # An exiting ovs-vswitchd stays a zombie thread-group leader for ~1.5 s while its worker
    # threads wind down; it no longer serves anything, so it counts as gone.
    if fields.get("State", "").strip().startswith(("Z", "X")):
        return False
    return fields.get("Name", "").strip() == program[:15]


def kill_pidfile(pidfile: Path, program: str, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, the daemon named in `pidfile`, if it still runs `program`."""
    pid = read_pid(pidfile)
    if pid is None or not pid_is(pid, program):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_is(pid, program):
                return
            time.sleep(0.02)


class OvsInstance:
    """One private OVS: `start()` it, talk to it through vsctl/ofctl/appctl, `stop()` it.

    `stop()` is idempotent and works from the pidfiles alone, so a fresh OvsInstance over the
    same workdir can stop daemons an earlier (crashed) process started.
    """

    def __init__(self, name: str, workdir: Path, netns: str) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.netns = netns

    # --- paths -------------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.workdir / "conf.db"

    @property
    def db_sock(self) -> Path:
        return self.workdir / "db.sock"

    @property
    def vswitchd_pidfile(self) -> Path:
        return self.workdir / "ovs-vswitchd.pid"

    @property
    def ovsdb_pidfile(self) -> Path:
        return self.workdir / "ovsdb-server.pid"

    @property
    def vswitchd_ctl(self) -> Path:
        """The vswitchd unixctl socket (OVS names it after the pid; `vswitchd.ctl` links to it)."""
        return self.workdir / "vswitchd.ctl"

    @property
    def ovsdb_ctl(self) -> Path:
        return self.workdir / "ovsdb.ctl"

    @property
    def vswitchd_log(self) -> Path:
        return self.workdir / "ovs-vswitchd.log"

    @property
    def ovsdb_log(self) -> Path:
        return self.workdir / "ovsdb-server.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points plain ovs-vsctl/ofctl/appctl (and rendered scripts) here."""
        d = str(self.workdir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.workdir / (bridge + '.mgmt')}"

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OvsInstance:
        """Create the database and start both daemons inside the netns (detached)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.db.exists():
            self.db.unlink()
        run(["ovsdb-tool", "create", str(self.db), str(SCHEMA)])
        run(
            [
                "ovsdb-server", "--detach", "--no-chdir", "--pidfile",
                f"--log-file={self.ovsdb_log}", f"--remote=punix:{self.db_sock}", str(self.db),
            ],
            netns=self.netns,
            env=self.env,
        )
        self._link_ctl(self.ovsdb_pidfile, "ovsdb-server", self.ovsdb_ctl)
        run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--no-wait", "init"])
        run(
            [
                "ovs-vswitchd", "--detach", "--no-chdir", "--pidfile",
                f"--log-file={self.vswitchd_log}", f"unix:{self.db_sock}",
            ],
            netns=self.netns,
            env=self.env,
        )
        self._link_ctl(self.vswitchd_pidfile, "ovs-vswitchd", self.vswitchd_ctl)
        return self

    def _link_ctl(self, pidfile: Path, program: str, link: Path) -> None:
        """Point `link` at OVS's `<program>.<pid>.ctl`, the path docs/facts.md and tests name."""
        pid = read_pid(pidfile)
        if pid is None:
            raise RuntimeError(f"{program} in {self.workdir} wrote no pidfile")
        target = self.workdir / f"{program}.{pid}.ctl"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.name)

    def running(self) -> bool:
        pid = read_pid(self.vswitchd_pidfile)
        return pid is not None and pid_is(pid, "ovs-vswitchd")

    def stop(self) -> None:
        """Ask both daemons to exit, then kill whatever is left via the pidfiles. Idempotent."""
        for _ctl, pidfile, program in (
            (self.vswitchd_ctl, self.vswitchd_pidfile, "ovs-vswitchd"),
            (self.ovsdb_ctl, self.ovsdb_pidfile, "ovsdb-server"),
        ):
            pid = read_pid(pidfile)
            if pid is None or not pid_is(pid, program):
                continue
            target = self.workdir / f"{program}.{pid}.ctl"
            if target.exists():
                run(["ovs-appctl", "-T", "5", "-t", str(target), "exit"], check=False, timeout=10)
                deadline = time.monotonic() + 2.0
                while pid_is(pid, program) and time.monotonic() < deadline:
                    time.sleep(0.02)
            kill_pidfile(pidfile, program)

    # --- talking to it -------------------------------------------------------------------------
    def vsctl(self, *args: str, timeout: int = 10) -> str:
        return run(
            ["ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={timeout}", *args],
            env=self.env,
            timeout=timeout + 5,
        ).stdout

    def ofctl(self, *args: str, input: str | None = None) -> str:
        """ovs-ofctl, always OpenFlow 1.4 (bundles need it). Bridge names resolve via OVS_RUNDIR."""
        return run(["ovs-ofctl", "-O", OPENFLOW, *args], env=self.env, input=input).stdout

    def appctl(self, *args: str) -> str:
        return run(["ovs-appctl", "-T", "10", "-t", str(self.vswitchd_ctl), *args], env=self.env).stdout

    def dump_flows(self, bridge: str, *args: str, stats: bool = False) -> list[str]:
        """The bridge's flows, one line each (no reply header; no counters unless `stats`)."""
        opts = [] if stats else ["--no-stats"]
        out = self.ofctl(*opts, "dump-flows", self.mgmt(bridge), *args)
        return [line.strip() for line in out.splitlines() if line.strip() and "reply" not in line]

    def add_bridge(self, bridge: str, datapath_type: str = "netdev") -> None:
        """A bridge on the userspace datapath, with the protocols bundles need (docs/facts.md)."""
        self.vsctl(
            "--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
            f"datapath_type={datapath_type}", "protocols=" + ",".join(OPENFLOW_VERSIONS),
        )

    def __repr__(self) -> str:
        return f"OvsInstance({self.name!r}, {str(self.workdir)!r}, netns={self.netns!r})"


def missing_binaries() -> list[str]:
    """OVS programs (and the schema) this machine lacks; empty when OVS is usable."""
    import shutil

    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not SCHEMA.exists():
        missing.append(str(SCHEMA))
    return missing


__all__ = ["CommandError", "OvsInstance", "kill_pidfile", "missing_binaries", "pid_is", "read_pid"]
