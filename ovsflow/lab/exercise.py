"""What every labs/*/check.py shares: find the running lab, record expectations, report, exit.

A check is a function `check(lab: Exercise) -> None` that calls `lab.expect(condition, text)`.
Run standalone (`python labs/NN-x/check.py [--name NAME]`, after `ovsflow lab up`) it prints one
line per expectation and exits 1 if any failed; the test suite calls the same function.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ovsflow.compiler import LEARN_TABLE
from ovsflow.program import COOKIE_LEARNED

from . import lab as labmod
from . import netns as ns
from .capture import TunnelPacket, capture_during, parse_tunnel_packets
from .ovs import OvsInstance
from .state import LabState

LEARNED = f"cookie={COOKIE_LEARNED:#x}/-1"


@dataclass
class Exercise:
    state: LabState
    echo: Callable[[str], None] = print
    results: list[tuple[bool, str]] = field(default_factory=list)

    # --- recording ---------------------------------------------------------------------------
    def expect(self, ok: bool, text: str) -> bool:
        self.results.append((bool(ok), text))
        self.echo(f"  [{'ok' if ok else 'FAIL'}] {text}")
        return bool(ok)

    def say(self, text: str) -> None:
        self.echo(text)

    @property
    def failures(self) -> list[str]:
        return [t for ok, t in self.results if not ok]

    # --- the lab -----------------------------------------------------------------------------
    def vm(self, port: str) -> dict:
        return self.state.vms[port]

    def ovs(self, host: str) -> OvsInstance:
        return labmod.host_ovs(self.state, host)

    def ping(self, src: str, dst: str, count: int = 3) -> bool:
        """Ping from VM `src` to VM `dst`'s IP (or to an IP given directly)."""
        ip = self.state.vms[dst]["ip"] if dst in self.state.vms else dst
        return labmod.ping(self.state, src, ip, count)

    def run(self, port: str, *cmd: str, check: bool = False):
        return labmod.vm_run(self.state, port, list(cmd), check=check)

    def capture(self, action: Callable[[], object], pcap_filter: str = "") -> list[TunnelPacket]:
        return parse_tunnel_packets(capture_during(self.state, action, pcap_filter=pcap_filter))

    def learned(self, host: str) -> list[str]:
        """Flows learn() put in br-tun's unicast table on `host`."""
        tun = self.state.hosts[host]["bridge_tun"]
        return self.ovs(host).dump_flows(tun, f"table={LEARN_TABLE},{LEARNED}")

    def forget(self) -> None:
        """Back to a cold start: delete learned flows everywhere and flush every VM's ARP cache,
        so the exercise (and its check) can be repeated."""
        for host, info in self.state.hosts.items():
            self.ovs(host).ofctl("del-flows", info["bridge_tun"], f"table={LEARN_TABLE},{LEARNED}")
        for port in self.state.vms:
            self.run(port, "ip", "neigh", "flush", "all")

    def tunnel_port(self, host: str, remote_host: str, kind: str) -> int:
        """OpenFlow port number of `host`'s tunnel of type `kind` towards `remote_host`."""
        remote = self.state.hosts[remote_host]["vtep"]
        name = f"{kind}-" + "".join(f"{int(x):02x}" for x in remote.split("."))
        return int(self.ovs(host).vsctl("get", "Interface", name, "ofport").strip())

    # --- moving a VM (lab 06) ---------------------------------------------------------------
    def replug(self, port: str, host: str, ofport: int) -> None:
        """What a hypervisor does when a VM arrives (Nova/os-vif's part, not ovsflow's): the VM's
        interface leaves its old host's br-int and comes back as a new veth into `host`'s
        namespace, with the same MAC, addresses and MTU, on `host`'s br-int at `ofport` (the
        number ovsflow's program expects). Flows are not touched: that is the program's job.
        The switch-over runs as one shell script: it is the VM's downtime, keep it short."""
        vm = self.state.vms[port]
        old, new = self.state.hosts[vm["host"]], self.state.hosts[host]
        iface, dev, vns = ns.check_ifname(vm["iface"]), vm["dev"], vm["netns"]
        addrs = ns.run(["ip", "-o", "-4", "addr", "show", "dev", dev], netns=vns).stdout.split()
        cidrs = [addrs[i + 1] for i, w in enumerate(addrs) if w == "inet"]
        route = ns.run(["ip", "route", "show", "default"], netns=vns).stdout.split()
        q = shlex.quote
        old_db, new_db = self.ovs(vm["host"]).db_sock, self.ovs(host).db_sock
        lines = [
            f"ovs-vsctl --db=unix:{q(str(old_db))} --if-exists del-port {q(old['bridge_int'])} {q(iface)}",
            f"ip -n {q(old['netns'])} link delete dev {q(iface)} || true   # the VM's {dev} goes with it",
            f"ip link add name {q(iface)} netns {q(new['netns'])} type veth peer name {q(dev)} netns {q(vns)}",
            f"ip -n {q(vns)} link set dev {q(dev)} address {q(vm['mac'])} mtu {labmod.VM_MTU}",
            f"ip netns exec {q(vns)} ethtool -K {q(dev)} tx off >/dev/null",
            f"ip netns exec {q(new['netns'])} ethtool -K {q(iface)} tx off >/dev/null",
            f"ip -n {q(vns)} link set dev {q(dev)} up",
            f"ip -n {q(new['netns'])} link set dev {q(iface)} up",
            *(f"ip -n {q(vns)} addr replace {q(c)} dev {q(dev)}" for c in cidrs),
            *([f"ip -n {q(vns)} route replace default via {q(route[route.index('via') + 1])}"] if "via" in route else []),
            f"ovs-vsctl --db=unix:{q(str(new_db))} --may-exist add-port {q(new['bridge_int'])} {q(iface)}"
            f" -- set Interface {q(iface)} ofport_request={int(ofport)}",
        ]
        ns.run(["sh", "-ec", "\n".join(lines)], timeout=60)
        vm["host"], vm["host_netns"] = host, new["netns"]
        self.state.save()

    def render(self, host: str, topo) -> None:
        """Run ovsflow's rendered script for `host` of `topo` on that host, as `lab up` does."""
        labmod.program_host(self.state, topo, host, lambda _msg: None)

    def plumb(self, host: str, topo, controller: str) -> None:
        """The OVSDB half of `host`'s rendered script, with `controller` as the bridges' OpenFlow
        controller and no flows: bridges, patch, tunnel and VM ports (with their ofport numbers),
        for a lab brought up with `program="none"` whose flows the live controller is to install.
        Idempotent; the controller is set only if it differs (setting it clears a bridge's flows)."""
        from ovsflow.compiler import compile_host
        from ovsflow.render import bridge_vsctl, stale_ports

        program = compile_host(topo, host, "netdev")
        lines = ["set -eu"]
        for b in program.bridges:
            lines += bridge_vsctl(b, controller) + stale_ports(b)
        info = self.state.hosts[host]
        path = Path(info["ovs_dir"]) / "plumb.sh"
        path.write_text("\n".join(lines) + "\n")
        ns.run(["sh", "-e", str(path)], netns=info["netns"], env=self.ovs(host).env, timeout=60)

    # --- VMs coming and going, a host's switch restarting (the live controller's lab tests) -----
    def add_vm(self, port: str, topo) -> None:
        """Plug VM `port`, new in `topo`, into its host as `lab up` would have: its namespace, MAC,
        address and MTU, and its veth peer in the host's namespace (not yet on br-int: `plumb`
        with `topo` adds it there with the ofport the program expects). Recorded in the state
        file first, so `lab down` removes it whatever happens."""
        names = labmod.namespace_names(self.state.name, list(topo.hosts), list(topo.ports))
        labmod._vm_up(self.state, topo, topo.ports[port], names, lambda _msg: None)

    def remove_vm(self, port: str) -> None:
        """Unplug VM `port`: off its host's br-int, its veth and namespace gone, out of the state."""
        vm = self.state.vms[port]
        host = vm["host"]
        self.ovs(host).vsctl("--if-exists", "del-port", self.state.hosts[host]["bridge_int"], vm["iface"])
        for pid in ns.netns_pids(vm["netns"]):
            os.kill(pid, signal.SIGKILL)
        ns.netns_delete(vm["netns"])  # the veth pair goes with its VM end
        ns.link_delete(vm["iface"], vm["host_netns"])
        del self.state.vms[port]
        if vm["netns"] in self.state.netns:
            self.state.netns.remove(vm["netns"])
        self.state.save()

    def restart_vswitchd(self, host: str, log: Callable[[str], None] = lambda _msg: None) -> float:
        """Stop `host`'s ovs-vswitchd and start it again over the same database, as a package
        upgrade or a crash does: the bridges come back from OVSDB with empty flow tables (and
        controller, fail_mode secure), VM veths are re-attached. Then what the host's own network
        configuration would redo at boot: br-phy (a new tap device) gets the VTEP address and
        OVS's tunnel route again. Returns time.monotonic() at the moment the new daemon was up."""
        from .ovs import pid_is, read_pid

        info, inst = self.state.hosts[host], self.ovs(host)
        pid = read_pid(inst.vswitchd_pidfile)
        inst.appctl("exit")
        deadline = time.monotonic() + 10
        while pid is not None and pid_is(pid, "ovs-vswitchd") and time.monotonic() < deadline:
            time.sleep(0.02)
        ns.run(["ovs-vswitchd", "--detach", "--no-chdir", "--pidfile", f"--log-file={inst.vswitchd_log}",
                f"unix:{inst.db_sock}"], netns=info["netns"], env=inst.env)
        started = time.monotonic()
        inst._link_ctl(inst.vswitchd_pidfile, "ovs-vswitchd", inst.vswitchd_ctl)
        deadline = time.monotonic() + 10
        while not ns.link_exists("br-phy", info["netns"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        plen = self.state.underlay.get("prefixlen", "24")
        ns.addr_add("br-phy", f"{info['vtep']}/{plen}", info["netns"])
        ns.link_up("br-phy", info["netns"])
        net = ipaddress.ip_network(f"{info['vtep']}/{plen}", strict=False)
        inst.appctl("ovs/route/add", str(net), "br-phy")
        log(f"host {host}: ovs-vswitchd restarted, br-phy {info['vtep']}/{plen} restored")
        return started

    def start_ping(self, src: str, dst_ip: str, out: Path, interval: float = 0.01) -> subprocess.Popen:
        """`ping -D -i interval` from VM `src` in the background, its output in `out` (stop_ping)."""
        fh = open(out, "w")  # noqa: SIM115 - handed to the ping process, closed by stop_ping
        try:
            return subprocess.Popen(["ip", "netns", "exec", self.state.vms[src]["netns"], "ping", "-n", "-D",
                                     "-i", str(interval), "-W", "1", dst_ip], stdout=fh, stderr=subprocess.STDOUT)
        finally:
            fh.close()  # the child holds its own descriptor

    @staticmethod
    def stop_ping(proc: subprocess.Popen) -> None:
        """SIGINT (ping prints its summary), then make sure it is gone."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.M)


def ping_replies(text: str) -> list[tuple[float, int]]:
    """(timestamp, icmp_seq) of every echo reply in `ping -D` output."""
    return [(float(t), int(q)) for t, q in _REPLY.findall(text)]


def ping_gap(text: str) -> float | None:
    """Longest silence, in seconds, between consecutive echo replies in `ping -D` output; None with
    fewer than two replies. With a 10 ms interval an undisturbed path gives about 0.01."""
    times = sorted(t for t, _ in ping_replies(text))
    if len(times) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(times))


def main(check: Callable[[Exercise], None], doc: str | None = None) -> None:
    """Command-line entry of a labs/*/check.py."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--name", default=os.environ.get("OVSFLOW_LAB_NAME", labmod.DEFAULT_NAME),
                        help="lab name given to `ovsflow lab up` (default ofl)")
    args = parser.parse_args()
    state = labmod.load_state(args.name)
    if state is None or state.status != "up":
        sys.exit(f"lab {args.name!r} is not up: run `ovsflow lab up <this lab's topology.yaml>` first")
    ex = Exercise(state)
    check(ex)
    n = len(ex.results)
    print(f"{n - len(ex.failures)}/{n} expectations hold")
    sys.exit(1 if ex.failures else 0)
