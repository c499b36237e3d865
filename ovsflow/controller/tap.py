"""Read ovsflow's own multipart replies straight off a switch connection, before Ryu parses them.

Ryu parses every flow-stats entry into a tree of objects (about 20 us each: a second for 50,000
flows, more than the whole no-op resync otherwise costs), and offers no per-connection hook to
avoid it. `ReplyTap` wraps one datapath's socket: multipart replies to the xids ovsflow asked
with are handed over as bytes; every other byte reaches Ryu unchanged and in order. Nothing in Ryu
is changed, and other apps' replies are parsed by Ryu as always.

To split the byte stream into messages the tap must know where one starts. When it is installed,
Ryu may be in the middle of a message, so it first passes everything through and looks for a
random marker it sends as an echo request's payload: the echo reply ends with it, so the byte
after the marker starts a message. Until then (or if the marker never comes back), replies simply
go through Ryu, and the shell decodes them from the parsed message's bytes instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

T_MULTIPART_REPLY = 19


class ReplyTap:
    """A socket stand-in for Ryu's receive loop (recv; everything else goes to the real socket)."""

    def __init__(self, sock: Any, deliver: Callable[[int, bytes], None]) -> None:
        self._sock = sock
        self._deliver = deliver
        self.wanted: set[int] = set()  # xids whose multipart replies are ovsflow's
        self.marker = os.urandom(16)
        self.aligned = False
        self._tail = b""  # before alignment: the last bytes seen, to find a marker split across reads
        self._frame = bytearray()  # after alignment: bytes not yet a whole message
        self._out = bytearray()  # bytes for Ryu

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def recv(self, n: int, *flags: int) -> bytes:
        while not self._out:
            data = bytes(self._sock.recv(65536))
            if not data:
                return data  # the connection closed (any partial message is lost with it)
            self.feed(data)
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def feed(self, data: bytes) -> None:
        if not self.aligned:
            window = self._tail + data
            i = window.find(self.marker)
            if i < 0:
                self._out += data
                self._tail = window[-(len(self.marker) - 1):]
                return
            cut = i + len(self.marker) - len(self._tail)  # where in `data` the marker ends
            self._out += data[:cut]
            data = data[cut:]
            self.aligned = True
        self._frame += data
        while len(self._frame) >= 8:
            length = int.from_bytes(self._frame[2:4], "big")
            if length < 8:  # not OpenFlow framing after all: stop tapping, let Ryu judge
                self.aligned = False
                self.marker = os.urandom(16)
                self._out += self._frame
                self._frame = bytearray()
                return
            if len(self._frame) < length:
                return
            msg = bytes(self._frame[:length])
            del self._frame[:length]
            xid = int.from_bytes(msg[4:8], "big")
            if msg[1] == T_MULTIPART_REPLY and xid in self.wanted:
                self._deliver(xid, msg)
            else:
                self._out += msg
