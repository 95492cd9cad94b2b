"""The agent's durable local queue: every heartbeat is written here (and fsync'd) before any
attempt to deliver it, and leaves only once clustermon has acknowledged it (or refused it for
good), so a heartbeat made while clustermon was away is sent later with its own `event_id`
and `sent_at`.

One append-only file of JSON lines, so that a crash can cost at most the line being written:

    {"seq": 41, "heartbeat": {...}}      a heartbeat waiting for delivery
    {"done": 41, "why": "delivered"}     every heartbeat up to 41 has left the queue

Heartbeats always leave oldest first (delivered, refused, or dropped when the spool is full),
so one `done` line says it for a whole prefix. When the finished prefix outweighs what is still
waiting, the waiting lines are rewritten to a temporary file that replaces the spool (an atomic
rename). On opening, a torn last line (the crash came mid-write) is cut off and ignored.

Pure standard library, no POSIX-only call: it runs on Windows as well (where an open file cannot
be replaced, hence the append handle is closed around the rename).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable
from itertools import takewhile
from pathlib import Path
from typing import Any, BinaryIO

import orjson

log = logging.getLogger("clustermon.agent")

MIN_MAX_BYTES = 64 * 1024
# Compaction rewrites what is waiting; below this much finished prefix it is not worth it.
COMPACT_MIN_BYTES = 256 * 1024


class Spool:
    """A bounded, crash-safe FIFO of heartbeats in one file. Use `Spool.open(path, max_bytes)`;
    one process at a time per file."""

    def __init__(self, path: Path, max_bytes: int):
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"the spool needs at least {MIN_MAX_BYTES} bytes")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.dropped = 0  # heartbeats dropped (spool full) since this process opened it
        self.torn = 0  # unreadable lines found when opening (a crash mid-write)
        self._pending: deque[tuple[int, bytes]] = deque()  # (seq, whole line) oldest first
        self._pending_bytes = 0
        self._dead_bytes = 0  # bytes of lines that no longer matter (done, dropped, torn)
        self._next_seq = 1
        self._file: BinaryIO | None = None

    @classmethod
    def open(cls, path: Path, max_bytes: int) -> Spool:
        spool = cls(path, max_bytes)
        spool._load()
        return spool

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what callers use -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def append(self, heartbeats: Iterable[dict[str, Any]]) -> int:
        """Write heartbeats at the end, durably (flush + fsync) before returning. When they do
        not fit in `max_bytes`, the oldest waiting ones are dropped to make room: their number
        is returned (and logged as a warning). On OSError (disk full) nothing changed."""
        first_seq = self._next_seq
        lines = [
            orjson.dumps({"seq": first_seq + n, "heartbeat": heartbeat}) + b"\n"
            for n, heartbeat in enumerate(heartbeats)
        ]
        if not lines:
            return 0
        incoming = sum(len(line) for line in lines)
        if incoming > self.max_bytes:
            raise ValueError("these heartbeats alone are larger than the spool may grow")
        # Which of the oldest must go, decided before writing, done after: a failed write
        # leaves the spool as it was.
        dropping, freed = 0, 0
        for _, line in self._pending:
            if self._pending_bytes - freed + incoming <= self.max_bytes:
                break
            dropping += 1
            freed += len(line)
        chunk = b"".join(lines)
        marker = b""
        if dropping:
            marker = self._done_line(self._pending[dropping - 1][0], "dropped")
        self._write(marker + chunk)
        self._next_seq = first_seq + len(lines)
        for _ in range(dropping):
            self._pending.popleft()
        self._pending_bytes -= freed
        self._dead_bytes += freed + len(marker)
        for n, line in enumerate(lines):
            self._pending.append((first_seq + n, line))
        self._pending_bytes += incoming
        if dropping:
            self.dropped += dropping
            log.warning(
                "spool full (%d bytes at most): dropped the %d oldest heartbeats to make room"
                " (%d dropped since the agent started); clustermon has been unreachable for"
                " long: raise --spool-max-bytes to keep more",
                self.max_bytes,
                dropping,
                self.dropped,
            )
        return dropping

    def oldest(self, count: int, max_bytes: int | None = None) -> tuple[int, list[dict]]:
        """Up to `count` waiting heartbeats, oldest first (and at most about `max_bytes` of
        them, always at least one), with the `seq` of the last one; (0, []) when empty."""
        taken: list[dict] = []
        size = 0
        last = 0
        for seq, line in self._pending:
            if len(taken) >= count:
                break
            if max_bytes is not None and taken and size + len(line) > max_bytes:
                break
            taken.append(orjson.loads(line)["heartbeat"])
            size += len(line)
            last = seq
        return last, taken

    def remove_through(self, seq: int, why: str) -> int:
        """The waiting heartbeats up to `seq` leave the spool (`why`: delivered, rejected),
        durably; returns how many. On OSError nothing changed: they are sent again later, and
        clustermon counts the repeats as duplicates. Compacts the file when its finished part
        has grown large."""
        removing = sum(1 for _ in takewhile(lambda p: p[0] <= seq, self._pending))
        if not removing:
            return 0
        marker = self._done_line(seq, why)
        self._write(marker)
        for _ in range(removing):
            _, line = self._pending.popleft()
            self._pending_bytes -= len(line)
            self._dead_bytes += len(line)
        self._dead_bytes += len(marker)
        if self._dead_bytes > max(COMPACT_MIN_BYTES, self._pending_bytes):
            try:
                self._compact()
            except OSError as exc:
                log.warning("spool %s not compacted (tried again later): %s", self.path, exc)
        return removing

    def close(self) -> None:
        """Everything is already on disk (each write was fsync'd): close the file."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    # -- the file ---------------------------------------------------------------------------

    @property
    def _temporary(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A compaction cut short leaves its temporary file; the spool itself is still whole.
        self._temporary.unlink(missing_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # The last write did not finish: that line never was part of the spool.
            self.torn += 1
            with self.path.open("r+b") as file:
                file.truncate(complete)
                file.flush()
                os.fsync(file.fileno())
            data = data[:complete]
        done = 0
        for line in data.splitlines(keepends=True):
            record = self._parse(line)
            if record is None:
                self.torn += 1
                self._dead_bytes += len(line)
                continue
            if "done" in record:
                done = max(done, record["done"])
                self._next_seq = max(self._next_seq, record["done"] + 1)
                self._dead_bytes += len(line)
                while self._pending and self._pending[0][0] <= done:
                    _, gone = self._pending.popleft()
                    self._pending_bytes -= len(gone)
                    self._dead_bytes += len(gone)
                continue
            seq = record["seq"]
            self._next_seq = max(self._next_seq, seq + 1)
            if seq <= done:
                self._dead_bytes += len(line)
                continue
            self._pending.append((seq, line))
            self._pending_bytes += len(line)
        if self.torn:
            log.warning(
                "spool %s: ignored %d unreadable line(s) (a write cut short by a crash)",
                self.path,
                self.torn,
            )
        if self._dead_bytes:
            try:
                self._compact()  # start with a file holding only what waits
            except OSError as exc:
                log.warning("spool %s not compacted (tried again later): %s", self.path, exc)
        else:
            self._file = self.path.open("ab")

    @staticmethod
    def _parse(line: bytes) -> dict | None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(record, dict):
            return None
        if isinstance(record.get("done"), int):
            return record
        if isinstance(record.get("seq"), int) and isinstance(record.get("heartbeat"), dict):
            return record
        return None

    @staticmethod
    def _done_line(seq: int, why: str) -> bytes:
        return orjson.dumps({"done": seq, "why": why}) + b"\n"

    def _write(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = self.path.open("ab")
        self._file.write(chunk)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _compact(self) -> None:
        """Rewrite only what is waiting, then swap the files atomically: a crash leaves either
        the old spool or the new one, both whole."""
        if self._file is not None:
            self._file.close()  # Windows cannot replace a file that is open
            self._file = None
        temporary = self._temporary
        try:
            with temporary.open("wb") as file:
                file.write(b"".join(line for _, line in self._pending))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)  # an antivirus holding the file: PermissionError
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            self._file = self.path.open("ab")
        _fsync_directory(self.path.parent)
        self._dead_bytes = 0


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable where the platform allows it (POSIX); Windows cannot open a
    folder, and NTFS journals the rename itself."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
