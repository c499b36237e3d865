# ruff: noqa: E501  (captured tcpdump lines are test data, kept verbatim)
"""Pure parts of the lab: tcpdump text decoding, probe frames, names, underlay prefix."""

from __future__ import annotations

from ovsflow.lab.capture import parse_tunnel_packets
from ovsflow.lab.lab import namespace_names, underlay_prefix
from ovsflow.lab.probe import build_frame, parse_frame

VXLAN = """\
02:00:45.787224 ul-hv1 P   ifindex 3 42:82:e9:af:f4:46 ethertype IPv4 (0x0800), length 154: (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 134)
    192.0.2.11.52879 > 192.0.2.12.4789: [no cksum] VXLAN, flags [I] (0x08), vni 101
02:00:00:00:01:01 > 02:00:00:00:01:02, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 55217, offset 0, flags [DF], proto ICMP (1), length 84)
    198.51.100.1 > 198.51.100.2: ICMP echo request, id 7264, seq 1, length 64
02:01:21.497754 ul-hv2 P   ifindex 3 ce:e8:eb:9e:04:4b ethertype IPv4 (0x0800), length 146: (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto GRE (47), length 126)
    192.0.2.12 > 192.0.2.11: GREv0, Flags [key present], key=0x66, proto TEB (0x6558), length 106
\t02:00:00:00:02:02 > 02:00:00:00:02:01, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 64, id 11779, offset 0, flags [none], proto ICMP (1), length 84)
    198.51.100.2 > 198.51.100.1: ICMP echo reply, id 8036, seq 1, length 64
"""


def test_parse_vxlan_and_gre() -> None:
    vx, gre = parse_tunnel_packets(VXLAN)
    assert (vx.kind, vx.key, vx.link, vx.outer_src, vx.outer_dst) == ("vxlan", 101, "ul-hv1", "192.0.2.11", "192.0.2.12")
    assert (vx.inner_src_mac, vx.inner_dst_mac) == ("02:00:00:00:01:01", "02:00:00:00:01:02")
    assert vx.overhead == 50 and "echo request" in vx.inner
    assert (gre.kind, gre.key, gre.outer_src, gre.outer_dst) == ("gre", 0x66, "192.0.2.12", "192.0.2.11")
    assert gre.inner_src_mac == "02:00:00:00:02:02" and "echo reply" in gre.inner
    assert gre.overhead == 14 + 126 - 98


def test_probe_frame_roundtrip() -> None:
    frame = build_frame("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "abcd:vm1")
    assert len(frame) >= 60 and frame[:6] == b"\xff" * 6
    assert parse_frame(frame) == "abcd:vm1"
    assert parse_frame(frame[:12] + b"\x08\x00" + frame[14:]) is None


def test_names_and_prefix() -> None:
    assert namespace_names("ofl", ["hv1"], ["vm1"]) == {"host:hv1": "ofl-hv1", "vm:vm1": "ofl-vm1", "underlay": "ofl-underlay"}
    clash = namespace_names("ofl", ["a"], ["a"])
    assert clash["host:a"] != clash["vm:a"]
    assert underlay_prefix(["192.0.2.11", "192.0.2.12"]) == 24
    assert underlay_prefix(["192.0.2.11", "192.0.3.12"]) == 23
