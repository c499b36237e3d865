"""Marked Ethernet frames that prove (or disprove) L2 reachability between lab VMs.

Why not just ping: two tenants may use the same IPs *and* MACs, so a ping that gets an answer does
not say who answered, and a ping that gets none does not say the frame never arrived. A probe frame
carries its sender's name in the payload (ethertype 0x88b5, IEEE "local experimental"), so a
listener in every VM can say exactly which VMs' frames reached it, whatever their addresses.

Run inside a VM namespace:
  python -m ovsflow.lab.probe listen DEV          # prints "ready", then one line per probe seen
  python -m ovsflow.lab.probe send DEV TAG MAC... # one frame per destination MAC
"""

from __future__ import annotations

import select
import signal
import socket
import sys

ETH_P_PROBE = 0x88B5
MAGIC = b"OVSFLOW-PROBE "


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def build_frame(src_mac: str, dst_mac: str, tag: str) -> bytes:
    payload = MAGIC + tag.encode() + b"\n"
    payload = payload.ljust(46, b"\0")  # Ethernet minimum payload
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + ETH_P_PROBE.to_bytes(2, "big") + payload


def parse_frame(frame: bytes) -> str | None:
    """The tag of a probe frame, or None for anything else."""
    if len(frame) < 14 or int.from_bytes(frame[12:14], "big") != ETH_P_PROBE:
        return None
    payload = frame[14:]
    if not payload.startswith(MAGIC):
        return None
    return payload[len(MAGIC):].split(b"\n", 1)[0].decode(errors="replace")


def send(dev: str, tag: str, dst_macs: list[str]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        src = ":".join(f"{b:02x}" for b in s.getsockname()[4][:6])
        for dst in dst_macs:
            s.send(build_frame(src, dst, tag))


def listen(dev: str) -> None:
    """Print the tag of every probe frame received on `dev` until SIGTERM/SIGINT."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_PROBE)) as s:
        s.bind((dev, ETH_P_PROBE))
        print("ready", flush=True)
        while not stop:
            ready, _, _ = select.select([s], [], [], 0.1)
            if not ready:
                continue
            frame, addr = s.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            tag = parse_frame(frame)
            if tag is not None:
                print(tag, flush=True)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "listen":
        listen(argv[1])
        return 0
    if len(argv) >= 4 and argv[0] == "send":
        send(argv[1], argv[2], argv[3:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
