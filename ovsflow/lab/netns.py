"""Network-namespace plumbing for the lab and the OVS tests, through plain `ip` subprocesses.

Plain `ip`/`ethtool` commands rather than a netlink library: every step is a command a learner can
read in the lab's log and type again by hand, and failures carry iproute2's own error text.
Every delete here is idempotent (a missing namespace or link is not an error), because clean-up
runs after crashes, when we do not know how far creation got.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

IFNAMSIZ = 15  # Linux interface names: at most 15 characters


class CommandError(RuntimeError):
    """A command exited non-zero; the message holds the command line and its stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(cmd)} -> exit {returncode}: {stderr.strip() or stdout.strip()}")


def run(
    cmd: Sequence[str],
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (in `netns` if given) and capture text output; raise CommandError if `check`."""
    full = list(cmd)
    if netns is not None:
        full = ["ip", "netns", "exec", netns, *full]
    run_env = None
    if env is not None:
        run_env = dict(os.environ)
        run_env.update(env)
    proc = subprocess.run(
        full, capture_output=True, text=True, env=run_env, input=input, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise CommandError(full, proc.returncode, proc.stdout, proc.stderr)
    return proc


def netns_list() -> list[str]:
    """Names of all named network namespaces (`ip netns list`, without the id suffix)."""
    out = run(["ip", "netns", "list"]).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def netns_add(name: str) -> None:
    """Create namespace `name` with loopback up. Fails if it already exists (names must be ours)."""
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def netns_delete(name: str) -> None:
    """Delete namespace `name` if it exists; its veth ends die with it (their peers too)."""
    if netns_exists(name):
        run(["ip", "netns", "delete", name], check=False)
        if netns_exists(name):  # e.g. a stale mount point left by a crash
            run(["umount", f"/run/netns/{name}"], check=False)
            try:
                os.unlink(f"/run/netns/{name}")
            except FileNotFoundError:
                pass


def netns_pids(name: str) -> list[int]:
    """PIDs of processes living in namespace `name` (to kill stray tcpdump/iperf3 on clean-up)."""
    if not netns_exists(name):
        return []
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def check_ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or " " in name:
        raise ValueError(f"invalid interface name {name!r} (1..{IFNAMSIZ} chars, no '/' or spaces)")
    return name


def link_exists(name: str, netns: str | None = None) -> bool:
    if netns is not None and not netns_exists(netns):
        return False
    return run(["ip", "link", "show", "dev", name], netns=netns, check=False).returncode == 0


def veth_add(a: str, a_netns: str | None, b: str, b_netns: str | None) -> None:
    """Create a veth pair with each end born directly in its namespace.

    Creating the ends inside their namespaces (`ip link add ... netns X ... peer ... netns Y`)
    means the names never pass through the root namespace, so they cannot collide with the
    machine's own interfaces.
    """
    check_ifname(a)
    check_ifname(b)
    cmd = ["ip", "link", "add", "name", a]
    if a_netns:
        cmd += ["netns", a_netns]
    cmd += ["type", "veth", "peer", "name", b]
    if b_netns:
        cmd += ["netns", b_netns]
    run(cmd)


def link_delete(name: str, netns: str | None = None) -> None:
    """Delete link `name` (and, for a veth, its peer) if it exists."""
    if link_exists(name, netns):
        run(["ip", "link", "delete", "dev", name], netns=netns, check=False)


def link_up(name: str, netns: str | None = None, *, mtu: int | None = None) -> None:
    cmd = ["ip", "link", "set", "dev", name]
    if mtu is not None:
        cmd += ["mtu", str(mtu)]
    run([*cmd, "up"], netns=netns)


def link_set_mac(name: str, mac: str, netns: str | None = None) -> None:
    run(["ip", "link", "set", "dev", name, "address", mac], netns=netns)


def addr_add(name: str, cidr: str, netns: str) -> None:
    """Add an address inside a namespace (never the root one: the lab must not touch it)."""
    run(["ip", "addr", "replace", cidr, "dev", name], netns=netns)


def tx_offload_off(name: str, netns: str | None = None) -> None:
    """`ethtool -K dev tx off`: the userspace datapath does not complete offloaded checksums."""
    run(["ethtool", "-K", name, "tx", "off"], netns=netns)


def bridge_add(name: str, netns: str) -> None:
    """A Linux bridge inside `netns` (the lab's underlay switch)."""
    run(["ip", "link", "add", "name", check_ifname(name), "type", "bridge"], netns=netns)
    run(["ip", "link", "set", "dev", name, "up"], netns=netns)


def link_master(name: str, master: str, netns: str) -> None:
    run(["ip", "link", "set", "dev", name, "master", master], netns=netns)


def veth_names_in_root() -> list[str]:
    """veth interfaces in the root namespace (the test suite checks none leak)."""
    out = run(["ip", "-o", "link", "show", "type", "veth"]).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return sorted(names)
