"""Programmatic underlay captures: run an action while tcpdump watches, return what it printed.

Used by the labs' checks and the tests to assert what is on the wire (VNIs, GRE keys, which VTEPs a
flood reached), with the same tcpdump command line `ovsflow lab capture` shows a learner.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from .state import LabState

TUNNEL_FILTER = "udp port 4789 or udp port 6081 or ip proto 47"


def capture_command(state: LabState, *, host: str | None = None, count: int | None = None,
                    write: str | None = None, all_traffic: bool = False,
                    pcap_filter: str = "", verbose: bool = True) -> list[str]:
    """tcpdump for the lab's underlay. Without `host` it listens on every underlay link, incoming
    direction only, so each frame shows once, named by the link of the host that sent it."""
    ul = state.underlay["netns"]
    if host is not None:
        if host not in state.hosts:
            raise KeyError(f"no host {host!r} (hosts: {', '.join(state.hosts)})")
        iface = ["-i", state.hosts[host]["underlay_dev"], "-Q", "in"]
    else:
        iface = ["-i", "any", "-Q", "in"]
    cmd = ["ip", "netns", "exec", ul, "tcpdump", "-l", "-n", "-e", *(["-v"] if verbose else []), *iface]
    if count:
        cmd += ["-c", str(count)]
    if write:
        cmd += ["-w", write]
    filt = pcap_filter
    if not all_traffic:
        filt = f"({TUNNEL_FILTER})" + (f" and ({filt})" if filt else "")
    if filt:
        cmd.append(filt)
    return cmd


def capture_during(state: LabState, action: Callable[[], object], *, host: str | None = None,
                   pcap_filter: str = "", settle: float = 0.3) -> str:
    """Start tcpdump, wait until it is listening, run `action`, then stop and return its text."""
    cmd = capture_command(state, host=host, pcap_filter=pcap_filter)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "tcpdump: data link type ..." then "listening on ..."
        deadline = time.monotonic() + 10
        while "listening on" not in line and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"tcpdump failed: {line}{proc.stderr.read()}")
            line = proc.stderr.readline()
        action()
        time.sleep(settle)
    finally:
        proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out


@dataclass(frozen=True)
class TunnelPacket:
    """One encapsulated frame as tcpdump printed it."""

    link: str  # underlay link it was captured on (the sending host's), "" if unknown
    kind: str  # "vxlan", "gre" or "geneve"
    outer_src: str
    outer_dst: str
    key: int  # VNI or GRE key
    inner_src_mac: str
    inner_dst_mac: str
    inner: str  # the inner frame's first line(s)
    outer_ip_len: int = 0  # outer IPv4 total length
    inner_len: int = 0  # inner Ethernet frame length

    @property
    def is_arp(self) -> bool:
        """The encapsulated frame is ARP (request or reply): what L2 population keeps off the wire."""
        return "ethertype ARP" in self.inner

    @property
    def inner_ttl(self) -> int | None:
        """TTL of the encapsulated IPv4 packet (None if it is not IPv4): routing decrements it."""
        m = _INNER_TTL.search(self.inner)
        return int(m.group(1)) if m else None

    @property
    def overhead(self) -> int:
        """Bytes the tunnel adds on the wire: outer Ethernet (14) + outer IP packet - inner frame."""
        return 14 + self.outer_ip_len - self.inner_len


_HDR = re.compile(r"^\d\d:\d\d:\d\d\.\d+ (?:(\S+) \S+ +ifindex \d+ )?")
_VXLAN = re.compile(r"(\d+\.\d+\.\d+\.\d+)\.\d+ > (\d+\.\d+\.\d+\.\d+)\.(4789|6081): .*?(VXLAN|Geneve).*?vni (0x[0-9a-f]+|\d+)")
_GRE = re.compile(r"(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): GREv0.*?key=(0x[0-9a-f]+|\d+)")
_MACS = re.compile(r"^\s*([0-9a-f:]{17}) > ([0-9a-f:]{17}),.*?length (\d+)")
_INNER_TTL = re.compile(r"ethertype IPv4 \(0x0800\), length \d+: \(tos \S+, ttl (\d+),")
_OUTER_LEN = re.compile(r"proto (?:UDP|GRE) \(\d+\), length (\d+)")


def parse_tunnel_packets(text: str) -> list[TunnelPacket]:
    """Split `tcpdump -n -e -v` output into packets and decode the tunnel headers."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if _HDR.match(line) and line[:2].isdigit():
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    packets = []
    for block in blocks:
        joined = " ".join(x.strip() for x in block)
        m = _HDR.match(block[0])
        link = (m.group(1) or "") if m else ""
        kind, src, dst, key = "", "", "", -1
        if mv := _VXLAN.search(joined):
            src, dst = mv.group(1), mv.group(2)
            kind = "vxlan" if mv.group(4) == "VXLAN" else "geneve"
            key = int(mv.group(5), 0)
        elif mg := _GRE.search(joined):
            src, dst, kind, key = mg.group(1), mg.group(2), "gre", int(mg.group(3), 0)
        if not kind:
            continue
        inner_src = inner_dst = ""
        inner_len = 0
        inner_lines = []
        for line in block[1:]:
            mm = _MACS.match(line)
            if mm and not inner_src:
                inner_src, inner_dst, inner_len = mm.group(1), mm.group(2), int(mm.group(3))
            if inner_src:
                inner_lines.append(line.strip())
        mo = _OUTER_LEN.search(joined)
        packets.append(TunnelPacket(link, kind, src, dst, key, inner_src, inner_dst, " ".join(inner_lines),
                                    int(mo.group(1)) if mo else 0, inner_len))
    return packets
