"""Event ids for heartbeats that bring none: version-4 UUIDs, as `uuid.uuid4()` makes them, from
random bytes read 64 KiB (4,096 ids) at a time.

`uuid4()` reads 16 bytes with a system call per id; a system call gives up the GIL, and under
load a request thread then waited up to a switch interval (5 ms) to get it back, once per
heartbeat. Ids must be unique, so the buffer is never shared: it is dropped in a forked child
(gunicorn workers fork from one parent) and handed out under a lock.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

CHUNK = 64 * 1024


class RandomIds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._buffer = b""
        self._used = 0

    def new(self, count: int) -> list[UUID]:
        size = 16 * count
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not reuse the parent's bytes
                self._pid, self._buffer, self._used = os.getpid(), b"", 0
            if self._used + size > len(self._buffer):
                self._buffer, self._used = os.urandom(max(CHUNK, size)), 0
            start = self._used
            self._used += size
            raw = self._buffer[start : start + size]
        return [UUID(bytes=raw[i : i + 16], version=4) for i in range(0, size, 16)]


new_ids = RandomIds().new
