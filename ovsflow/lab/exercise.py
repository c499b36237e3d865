"""What every labs/*/check.py shares: find the running lab, record expectations, report, exit.

A check is a function `check(lab: Exercise) -> None` that calls `lab.expect(condition, text)`.
Run standalone (`python labs/NN-x/check.py [--name NAME]`, after `ovsflow lab up`) it prints one
line per expectation and exits 1 if any failed; the test suite calls the same function.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ovsflow.program import COOKIE_LEARNED

from . import lab as labmod
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
        """Flows learn() put in br-tun's table 20 on `host`."""
        tun = self.state.hosts[host]["bridge_tun"]
        return self.ovs(host).dump_flows(tun, f"table=20,{LEARNED}")

    def forget(self) -> None:
        """Back to a cold start: delete learned flows everywhere and flush every VM's ARP cache,
        so the exercise (and its check) can be repeated."""
        for host, info in self.state.hosts.items():
            self.ovs(host).ofctl("del-flows", info["bridge_tun"], f"table=20,{LEARNED}")
        for port in self.state.vms:
            self.run(port, "ip", "neigh", "flush", "all")

    def tunnel_port(self, host: str, remote_host: str, kind: str) -> int:
        """OpenFlow port number of `host`'s tunnel of type `kind` towards `remote_host`."""
        remote = self.state.hosts[remote_host]["vtep"]
        name = f"{kind}-" + "".join(f"{int(x):02x}" for x in remote.split("."))
        return int(self.ovs(host).vsctl("get", "Interface", name, "ofport").strip())


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
