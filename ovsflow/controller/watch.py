"""When to read the topology file again: SIGHUP, inotify, or polling.

The shell feeds it events (a SIGHUP flag, file names inotify reported) and asks `due()` on every
tick; it answers with the reason to reload, or None. Polling is the fallback where inotify says
nothing: a change found that way loads once the file has been still for one interval, so an
editor's half-written file is not read (and rejected) on the way. A file closed after writing or
renamed into place (inotify) loads at once: both mean the writer is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable

Stamp = tuple[int, int, int] | None


def file_stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TopologyWatch:
    def __init__(self, path: str, poll_interval: float, clock: Callable[[], float],
                 stamp: Callable[[str], Stamp] = file_stamp) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.interval = max(poll_interval, 0.0)
        self.clock = clock
        self._stamp_of = stamp
        self.hup = False  # set by the SIGHUP handler (only a flag: see the shell)
        self.file_event = True  # look once at start: events before the watch began were missed
        self.loaded_stamp: Stamp = None  # the file as last loaded
        self._seen: Stamp = None  # the file as last polled
        self._next_poll = clock() + self.interval

    def stamp(self) -> Stamp:
        return self._stamp_of(self.path)

    def loaded(self) -> None:
        """A reload read the file (successfully or not): changes are relative to this version."""
        self.loaded_stamp = self._seen = self.stamp()

    def notified(self, names: list[str]) -> None:
        """inotify reported these names closed after writing or moved into the directory."""
        if self.name in names:
            self.file_event = True

    def due(self) -> str | None:
        if self.hup:
            self.hup = self.file_event = False
            return "SIGHUP"
        if self.file_event:
            self.file_event = False
            return "file change" if self.stamp() != self.loaded_stamp else None
        now = self.clock()
        if self.interval and now >= self._next_poll:
            self._next_poll = now + self.interval
            stamp = self.stamp()
            changed = stamp != self.loaded_stamp and stamp == self._seen
            self._seen = stamp
            return "file change" if changed else None
        return None
