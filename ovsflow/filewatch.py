"""Linux inotify for one directory, through libc: which file names were closed after writing or
renamed into place.

Written here rather than taken from a package because the live controller runs under eventlet's
monkey patching, which removes `select.poll`; inotify_simple imports it at load time and fails
there. This needs no polling object at all: the fd is non-blocking and the caller waits on it with
its own event loop (eventlet's trampoline).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


class DirWatch:
    """Watch `directory` for files closed after writing (IN_CLOSE_WRITE) or moved in (IN_MOVED_TO)."""

    def __init__(self, directory: str) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        if libc.inotify_add_watch(fd, os.fsencode(directory), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def names(self) -> list[str]:
        """Names of the files with events since the last call; call it when the fd is readable.
        One read (64 KiB holds hundreds of events): under eventlet os.read is green and would
        wait for more if called again on an empty fd."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out: list[str] = []
        pos = 0
        while pos + _EVENT.size <= len(data):
            _, _, _, n = _EVENT.unpack_from(data, pos)
            out.append(os.fsdecode(data[pos + _EVENT.size:pos + _EVENT.size + n].rstrip(b"\0")))
            pos += _EVENT.size + n
        return out

    def close(self) -> None:
        os.close(self.fd)
