"""One commit path for the heartbeats of every API worker process (`serve` on PostgreSQL).

Each worker already groups its concurrent heartbeat requests into one commit (api/ingest.py),
but a group can only hold the requests in flight in that worker, and every commit costs the
same fixed work whatever its size: the round trip, the function's statements, the append lock
and the WAL flush, which the lock makes each commit wait for in turn. The committer is one
process that the workers hand their groups to over a Unix socket. While it commits, the groups
of all workers queue in its sockets; it then merges everything queued into one call of
`clustermon_append_heartbeats` and answers each worker with its own share of the result.
Figures in BENCHMARKS.md, "HTTP API", session 6.

It changes nothing about what a commit means: a worker answers 202 only after the committer
said that the merged group is committed. Groups that cannot share a call are committed one
after another: those judged by other policy versions, or repeating an event id of another
group. When the merged call is refused (some component needs a decision) or fails on a value,
each group is committed alone, so that only the group concerned is refused or fails.

The workers fall back to committing themselves when the committer cannot be reached (not
started, gone): slower, never wrong. A committer that dies mid-commit leaves that group's
outcome unknown to its worker, which answers 503 as it would for a lost database connection.

Frames: a request is `!II` (header length, rows length), the header (orjson: type, schema
version, recorded_at, ids, maybe_duplicates, policy streams, policy versions) and the rows'
JSON as the worker serialised it (merged by joining the arrays, never parsed). An answer is
`!I` and an orjson object: {"stored": [[id, position, version], ...], "at": recorded_at},
{"refused": true}, or {"error": "data" | "unavailable", "message": ...}.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import orjson
import sqlalchemy as sa

from eventstore.db import AutocommitConnections, create_engine
from eventstore.store import Appended, HeartbeatGroup, commit_heartbeat_group

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("!II")
_ANSWER = struct.Struct("!I")
MAX_MERGED_EVENTS = 5000  # what one call may carry (a worker's own groups are at most this)
RECONNECT_SECONDS = 5.0  # a worker retries an unreachable committer this often


# --- the worker's side ------------------------------------------------------------------------


class CommitterError(Exception):
    """What the committer reported instead of a result (see `CommitterClient.__call__`)."""

    def __init__(self, message: str):
        super().__init__(message)
        # Worded like a psycopg error's diagnostics: api/heartbeats.py quotes message_primary.
        self.diag = type("Diag", (), {"message_primary": message})()


class CommitterClient:
    """`EventStore.commit_heartbeats` through the committer at `path`; `fallback` (the store's
    own) while the committer cannot be reached.

    Calls do not wait for each other: each sends its group at once on the process's one
    connection, and a reader thread hands the answers, which come back in the order the groups
    were sent, to the callers waiting for them. Grouping is the committer's job."""

    def __init__(self, path: str, fallback, timeout: float = 30.0):
        self.path = path
        self.fallback = fallback
        self.timeout = timeout
        self._lock = threading.Lock()  # sending, and the order of `_waiting`
        self._sock: socket.socket | None = None
        self._waiting: deque[_Waiter] = deque()
        self._pid = os.getpid()
        self._retry_at = 0.0

    def __call__(self, group: HeartbeatGroup) -> Appended | None:
        waiter = _Waiter()
        with self._lock:
            sock = self._connected()
            if sock is None:
                waiter = None
            else:
                self._waiting.append(waiter)
                try:
                    sock.sendall(_request(group))
                except OSError as exc:
                    self._drop(sock, exc)
        if waiter is None:
            return self.fallback(group)
        if not waiter.ready.acquire(timeout=self.timeout):
            with self._lock:
                if self._sock is not None:
                    self._drop(self._sock, TimeoutError("no answer from the committer in time"))
        return waiter.outcome()

    def _connected(self) -> socket.socket | None:
        if self._pid != os.getpid():  # forked: the parent's connection is not ours
            self._sock, self._waiting, self._pid, self._retry_at = None, deque(), os.getpid(), 0
        if self._sock is None and time.monotonic() >= self._retry_at:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                self._retry_at = time.monotonic() + RECONNECT_SECONDS
                log.warning("committer at %s unreachable (%s): committing here", self.path, exc)
            else:
                self._sock = sock
                threading.Thread(target=self._read, args=(sock,), daemon=True).start()
        return self._sock

    def _read(self, sock: socket.socket) -> None:
        """Hand each answer to the caller that waits for it, until the connection ends."""
        try:
            while True:
                (size,) = _ANSWER.unpack(_read_exactly(sock, _ANSWER.size))
                answer = orjson.loads(_read_exactly(sock, size))
                with self._lock:
                    waiter = self._waiting.popleft()
                waiter.answer = answer
                waiter.ready.release()
        except (OSError, IndexError) as exc:
            with self._lock:
                if self._sock is sock:
                    self._drop(sock, exc)

    def _drop(self, sock: socket.socket, exc: BaseException) -> None:
        """End the connection (with `_lock` held): every group sent on it and not answered
        fails. Perhaps committed, perhaps not: its requests answer 503, as they would when a
        database connection breaks during a commit."""
        sock.close()
        self._sock = None
        while self._waiting:
            waiter = self._waiting.popleft()
            waiter.error = sa.exc.OperationalError(None, None, CommitterError(str(exc)))
            waiter.ready.release()


class _Waiter:
    __slots__ = ("ready", "answer", "error")

    def __init__(self):
        self.ready = threading.Lock()
        self.ready.acquire()
        self.answer: dict | None = None
        self.error: BaseException | None = None

    def outcome(self) -> Appended | None:
        if self.error is not None:
            raise self.error
        answer = self.answer
        if "stored" in answer:
            stored = {UUID(i): (position, version) for i, position, version in answer["stored"]}
            at = answer["at"]
            return stored, datetime.fromisoformat(at) if at else None
        if answer.get("refused"):
            return None
        error = CommitterError(answer["message"])
        if answer["error"] == "data":
            raise sa.exc.DataError(None, None, error)
        raise sa.exc.OperationalError(None, None, error)


def _request(group: HeartbeatGroup) -> bytes:
    header = orjson.dumps(
        [
            group.type,
            group.schema_version,
            group.recorded_at,
            group.ids,
            group.maybe_duplicates,
            group.policy_streams,
            group.policy_versions,
        ]
    )
    return _REQUEST.pack(len(header), len(group.rows)) + header + group.rows


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the committer closed the connection")
        data += chunk
    return bytes(data)


# --- the committer's side ---------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    """One worker's connection: what it sent so far that is not a whole frame yet."""

    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    def frames(self) -> list[HeartbeatGroup]:
        groups = []
        while len(self.buffer) >= _REQUEST.size:
            header_size, rows_size = _REQUEST.unpack_from(self.buffer)
            end = _REQUEST.size + header_size + rows_size
            if len(self.buffer) < end:
                break
            header = orjson.loads(self.buffer[_REQUEST.size : _REQUEST.size + header_size])
            rows = bytes(self.buffer[_REQUEST.size + header_size : end])
            del self.buffer[:end]
            type_, version, at, ids, dups, streams, versions = header
            groups.append(
                HeartbeatGroup(
                    type_,
                    version,
                    rows,
                    [UUID(i) for i in ids],
                    datetime.fromisoformat(at),
                    [UUID(i) for i in dups],
                    streams,
                    versions,
                )
            )
        return groups


def merged(groups: list[HeartbeatGroup]) -> HeartbeatGroup:
    """One group of all `groups` (which can share a call: see `batches`), rows in order."""
    if len(groups) == 1:
        return groups[0]
    first = groups[0]
    return HeartbeatGroup(
        first.type,
        first.schema_version,
        b"[" + b",".join(g.rows[1:-1] for g in groups if len(g.rows) > 2) + b"]",
        [i for g in groups for i in g.ids],
        # The earliest clock reading: each row's staleness bound was computed from its own
        # worker's reading, and a stamp no later than that keeps the gap it judged. The function
        # raises the stamp to the log's last recorded_at anyway.
        min(g.recorded_at for g in groups),
        list(dict.fromkeys(i for g in groups for i in g.maybe_duplicates)),
        first.policy_streams,
        first.policy_versions,
    )


def batches(groups: list[HeartbeatGroup]) -> list[list[HeartbeatGroup]]:
    """`groups` (in arrival order) cut into runs that can share one call: same event type and
    policy versions, no event id twice, at most MAX_MERGED_EVENTS events."""
    runs: list[list[HeartbeatGroup]] = []
    key = ids = size = None
    for group in groups:
        group_key = (group.type, group.schema_version, group.policy_streams, group.policy_versions)
        fits = (
            runs
            and group_key == key
            and size + len(group.ids) <= MAX_MERGED_EVENTS
            and ids.isdisjoint(group.ids)
        )
        if fits:
            runs[-1].append(group)
            ids.update(group.ids)
            size += len(group.ids)
        else:
            runs.append([group])
            key, ids, size = group_key, set(group.ids), len(group.ids)
    return runs


def answers(groups: list[HeartbeatGroup], commit) -> list[dict]:
    """Each group's answer, committing them together with `commit` (commit_heartbeat_group
    bound to a connection) where possible, alone where the merged call was refused or
    failed on a value."""
    try:
        appended = commit(merged(groups))
    except sa.exc.DataError as exc:
        if len(groups) > 1:
            return [a for g in groups for a in answers([g], commit)]
        return [_error("data", exc)]
    except sa.exc.SQLAlchemyError as exc:
        return [_error("unavailable", exc)] * len(groups)
    if appended is None:
        if len(groups) > 1:
            return [a for g in groups for a in answers([g], commit)]
        return [{"refused": True}]
    stored, at = appended
    return [{"stored": [(i, *stored[i]) for i in g.ids if i in stored], "at": at} for g in groups]


def _error(kind: str, exc: sa.exc.DBAPIError) -> dict:
    diag = getattr(exc.orig, "diag", None)  # PostgreSQL's own words, not our statement
    message = getattr(diag, "message_primary", None) or exc.orig.__class__.__name__
    return {"error": kind, "message": message}


def serve(database_url: str, path: str, *, exit_with_parent: int | None = None) -> None:
    """Commit the heartbeat groups that workers send to the Unix socket at `path`, until
    the process `exit_with_parent` is gone (checked every second) or SIGINT/SIGTERM."""
    engine = create_engine(database_url)
    connections = AutocommitConnections(engine)

    def commit(group: HeartbeatGroup) -> Appended | None:
        return commit_heartbeat_group(connections.run, True, group)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    workers: dict[socket.socket, _Worker] = {}
    try:
        while exit_with_parent is None or os.getppid() == exit_with_parent:
            pending: list[tuple[_Worker, HeartbeatGroup]] = []
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj is listener:
                    sock, _ = listener.accept()
                    workers[sock] = _Worker(sock)
                    selector.register(sock, selectors.EVENT_READ)
                    continue
                worker = workers[key.fileobj]
                data = _receive(worker.sock)
                if not data:
                    selector.unregister(worker.sock)
                    del workers[worker.sock]
                    worker.sock.close()
                    continue
                worker.buffer += data
                pending.extend((worker, g) for g in worker.frames())
            if pending:
                _commit_pending(pending, commit)
    finally:
        for sock in workers:
            sock.close()
        listener.close()
        if os.path.exists(path):
            os.unlink(path)
        connections.close()
        engine.dispose()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except OSError:
        return b""


def _commit_pending(pending: list[tuple[_Worker, HeartbeatGroup]], commit) -> None:
    """Commit what the workers sent and answer each worker once, its answers in the order it
    sent the groups (its client matches them by that order)."""
    origin = {id(g): w for w, g in pending}
    out: dict[_Worker, bytearray] = {}
    for run in batches([g for _, g in pending]):
        for group, answer in zip(run, answers(run, commit), strict=True):
            body = orjson.dumps(answer)
            out.setdefault(origin[id(group)], bytearray()).extend(
                _ANSWER.pack(len(body)) + body
            )
    for worker, data in out.items():
        try:
            worker.sock.sendall(data)
        except OSError:  # that worker is gone; the others still get their answers
            log.warning("a worker left before its answers")
