"""The /health poller: polls every target at its interval and records what it got, through the
same decision path as `POST /heartbeats` (API.md v1.1, "Collection").

Run by the leading scheduler (scheduler/service.py): `lead(state)` every second hands over the
targets as the scheduler's index folded them and starts polling if it was not; `stop()` on
step-down. The polls run on an asyncio loop in a thread of their own, all due targets at
once up to `concurrency` in flight, each within its own timeout (collector/probe.py), so a slow
or dead target holds one slot for at most its timeout and never delays the others. asyncio +
httpx.AsyncClient was chosen over a thread pool of httpx.Client by measurement (BENCHMARKS.md,
"Collection: polling 1,000 targets"): about the same CPU per poll, but only asyncio bounds a
whole request (name lookup and a trickling body included) by one deadline.

When a target is polled: each has a grid of due times, `interval` apart, at a phase drawn from
its name (so 1,000 targets every 30 s spread evenly instead of all at once, and every leader
computes the same grid). A new target, or one whose settings changed, is polled at once; a new
leader resumes each target's grid after its last poll in `target_polls` (one that is overdue
is polled at once, missed due times are not made up one by one).

What is recorded, by a recorder thread (the database never holds up the loop) in batches of the
polls that ended within RECORD_DELAY_SECONDS of each other or while the last batch was written:
- a good poll: the `web` and `service` heartbeats of `collector.health.heartbeats`, submitted to
  a GroupCommitter, one submit a batch (its polls share one commit), each with `event_id` = uuid5 of
  (server, component, due time): a retried append, or the same due time polled by the old and
  the new leader around a takeover, is a duplicate;
- a failing poll: a `CollectionFailed` only when failing starts or its kind changes, judged
  against the target's `failure` in the state handed over and, until that state has caught up
  with it, against what this poller itself recorded last (no double append in between);
- every poll: its row in `target_polls` (at, ok, error, seconds), written once a second.
A poll whose target was removed or changed its URL meanwhile is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import heapq
import logging
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from collector import health, probe
from collector.poll_log import PollRow, last_polls, write_polls
from domain.events import COLLECTOR_ACTOR, CollectionFailed, HeartbeatRecorded
from domain.state import ClusterState, TargetState
from eventstore.clock import Clock
from eventstore.commands import ClusterCommands
from eventstore.db import unavailable_reason
from eventstore.group_commit import GroupCommitter, Receipt
from eventstore.store import NewEvent, RecordedEvent

log = logging.getLogger("clustermon.collector")

CA_BUNDLE_ENV = "CLUSTERMON_COLLECTOR_CA_BUNDLE"  # extra CAs to trust (a PEM file or directory)
DEFAULT_CONCURRENCY = 256  # polls in flight at most (1,000 dead targets x 5 s / 30 s = 167)
# The recorder, the target_polls writer and the start's read: one thread each at most.
DATABASE_THREADS = 3
FLUSH_SECONDS = 1.0  # target_polls rows are written this often
LONGEST_SLEEP = 1.0  # the loop looks at its targets at least this often
# A poll's answer waits this long for others to share its commit (a heartbeat recorded 0.1 s
# later changes nothing; a commit per poll costs ~1 ms of CPU).
RECORD_DELAY_SECONDS = 0.1
RETRY_PAUSE_SECONDS = 0.5  # before the one retry of an append that failed on the database

# uuid5 namespace of the heartbeats' event ids (fixed forever: ids must not change).
POLL_NAMESPACE = uuid.UUID("0b6f3c55-2f7e-4d0b-9d8e-6a3c1f2e9b41")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def poll_event_id(server: str, component: str, due: datetime) -> uuid.UUID:
    """The id of the heartbeat of `component` that the poll of `server` due at `due` records."""
    return uuid.uuid5(POLL_NAMESPACE, f"{server}\x00{component}\x00{due.isoformat()}")


# --- the grid of due times --------------------------------------------------------------------


def _ms(t: datetime) -> int:
    return (t - _EPOCH) // _MS


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _phase_ms(server: str, interval_ms: int) -> int:
    digest = hashlib.sha256(server.encode()).digest()
    return int.from_bytes(digest[:8], "big") % interval_ms


def grid_after(server: str, interval_seconds: float, t: datetime) -> datetime:
    """The first due time of `server` strictly after `t`."""
    interval = max(1, round(interval_seconds * 1000))
    phase = _phase_ms(server, interval)
    return _at(phase + ((_ms(t) - phase) // interval + 1) * interval)


def grid_at_or_before(server: str, interval_seconds: float, t: datetime) -> datetime:
    """The last due time of `server` at or before `t`."""
    interval = max(1, round(interval_seconds * 1000))
    phase = _phase_ms(server, interval)
    return _at(phase + ((_ms(t) - phase) // interval) * interval)


def next_due(server: str, interval_seconds: float, due: datetime, now: datetime) -> datetime:
    """The due time after a poll due at `due`: the next grid point at least half an interval
    later (a poll made off the grid, at once, is not followed by another a moment later), or
    the last grid point already passed when polling is late (missed polls are not made up)."""
    following = grid_after(server, interval_seconds, due + timedelta(seconds=interval_seconds / 2))
    if following <= now:
        return grid_at_or_before(server, interval_seconds, now)
    return following


def _floor_ms(t: datetime) -> datetime:
    return _at(_ms(t))


# --- what a poll got --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollResult:
    server: str
    url: str
    due: datetime  # when the poll was due (its heartbeats' ids derive from it)
    started: datetime  # when its request started (our clock)
    answered_at: datetime  # when the answer came, or the failure (our clock): `sent_at`
    outcome: probe.Outcome
    receipt: Receipt | None = None  # a good poll: the commit of its batch (shared)
    failure_event: RecordedEvent | None = None  # a CollectionFailed appended for this poll
    dropped: bool = False  # the target was removed or changed meanwhile: nothing recorded
    error: str | None = None  # recording failed (the database): why


@dataclass(frozen=True, slots=True)
class _View:
    """The targets as the scheduler's index last folded them, and the position folded."""

    targets: Mapping[str, TargetState]
    position: int


@dataclass(slots=True)
class _Slot:
    settings: tuple[Any, ...]
    next_due: datetime


class _Session:
    """What one event loop polls with: the HTTP clients (verifying and not), the slots, and
    the polls that ended and wait for the recorder."""

    def __init__(self, tls: ssl.SSLContext, concurrency: int):
        self.slots = asyncio.Semaphore(concurrency)
        self.verifying = probe.client(tls, concurrency)
        self.trusting = probe.client(False, concurrency)
        self.ended: deque[tuple[PollResult, asyncio.Future[PollResult]]] = deque()
        self.recording = False  # a batch is being recorded (only the loop's thread sets it)

    def client_for(self, target: TargetState) -> httpx.AsyncClient:
        return self.verifying if target.verify_tls else self.trusting

    async def close(self) -> None:
        await self.verifying.aclose()
        await self.trusting.aclose()


class Poller:
    def __init__(
        self,
        commands: ClusterCommands,
        clock: Clock,
        *,
        committer: GroupCommitter | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        ca_bundle: str | None = None,
        on_poll: Callable[[PollResult], None] | None = None,
    ):
        self.commands = commands
        self.engine = commands.store.engine
        self.clock = clock
        self.committer = committer or GroupCommitter(commands)
        self.concurrency = concurrency
        self.tls = probe.tls_context(ca_bundle)  # a bad bundle fails here, loudly, at start
        self.on_poll = on_poll  # called after each poll is recorded (the benchmark's probe)
        if logging.getLogger("httpx").level == logging.NOTSET:
            # httpx logs every request at INFO: 33 lines a second for 1,000 targets.
            logging.getLogger("httpx").setLevel(logging.WARNING)
        self._db = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="collector-db")
        self._lock = threading.Lock()
        self._view = _View({}, -1)
        self._recorded: dict[str, tuple[str | None, int]] = {}  # server -> (failure kind, at)
        self._rows: dict[str, PollRow] = {}  # waiting for the next flush
        self._record_trouble: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._in_flight: set[str] = set()
        self._seen: _View | None = None
        self._resume: dict[str, PollRow] | None = None  # last polls, read when polling starts

    # --- handed over by the scheduler -------------------------------------------------------

    def follow(self, state: ClusterState) -> None:
        """Take the targets of `state` (thread-safe: copies, handed over in one assignment)."""
        view = self._view
        if state.position == view.position:
            return
        # A target the fold changed has a new version (settings, a failure) or lost its failure
        # (a good poll); the others keep their copy: copying 16,000 targets every second cost
        # more than polling them.
        targets: dict[str, TargetState] = {}
        for server, target in state.targets.items():
            mine = view.targets.get(server)
            same = mine is not None and mine.version == target.version
            if mine is not None and same and mine.failure is target.failure:
                targets[server] = mine
            else:
                targets[server] = dataclasses.replace(target)
        self._view = _View(targets, state.position)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop just closed
                loop.call_soon_threadsafe(wake.set)

    def lead(self, state: ClusterState) -> None:
        """The scheduler leads: follow `state`, and poll (start the loop) if not yet."""
        self.follow(state)
        self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._reset_schedule()
        self._thread = threading.Thread(target=self._thread_main, name="collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (step-down): polls in flight are abandoned, nothing more is recorded."""
        self._stopping = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._try_flush()

    def close(self) -> None:
        self.stop()
        self._db.shutdown(wait=False)

    # --- one round, for tests and one-off use -----------------------------------------------

    def run_once(self) -> list[PollResult]:
        """Poll every target due now, wait for all, record, write the rows; the results."""
        if self._resume is None:
            self._resume = last_polls(self.engine)
        return self.poll(self._take_due(self.clock()))

    def poll(self, due: Iterable[tuple[TargetState, datetime]]) -> list[PollResult]:
        """Poll these targets now (as due at the given times), record, write the rows."""

        async def round_() -> list[PollResult]:
            session = _Session(self.tls, self.concurrency)
            try:
                polled = await asyncio.gather(*(self._poll(session, t, d) for t, d in due))
            finally:
                await session.close()
            return [r for r in polled if r is not None]

        results = asyncio.run(round_())
        self.flush()
        return results

    # --- the loop ---------------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:  # pragma: no cover - logged: the next lead() starts a new loop
            log.exception("the collector's loop stopped")
        finally:
            self._loop = self._wake = None

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._wake = loop, asyncio.Event()
        try:
            self._resume = await loop.run_in_executor(self._db, last_polls, self.engine)
        except Exception as exc:
            log.warning("cannot read the last polls (%s): every target is polled at once", exc)
            self._resume = {}
        log.info("collector: polling %d targets", len(self._view.targets))
        session = _Session(self.tls, self.concurrency)
        tasks: set[asyncio.Task] = set()
        flushing: asyncio.Future | None = None
        flushed_at = time.monotonic()
        try:
            while not self._stopping:
                now = self.clock()
                for target, due in self._take_due(now):
                    task = loop.create_task(self._poll(session, target, due))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if time.monotonic() - flushed_at >= FLUSH_SECONDS and (
                    flushing is None or flushing.done()
                ):
                    flushing = loop.run_in_executor(self._db, self._try_flush)
                    flushed_at = time.monotonic()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sleep_for(now)):
                        await self._wake.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()

    def _sleep_for(self, now: datetime) -> float:
        """Seconds until the next due time, at most LONGEST_SLEEP."""
        while self._heap:
            due, server = self._heap[0]
            slot = self._slots.get(server)
            if slot is not None and slot.next_due == due:
                return max(0.0, min(LONGEST_SLEEP, (due - now).total_seconds()))
            heapq.heappop(self._heap)  # superseded
        return LONGEST_SLEEP

    # --- the schedule -----------------------------------------------------------------------

    def _reset_schedule(self) -> None:
        self._slots = {}
        self._heap = []
        self._in_flight = set()
        self._seen = None
        self._resume = None

    def _take_due(self, now: datetime) -> list[tuple[TargetState, datetime]]:
        """The targets due at `now` with their due times; each one's next due is set."""
        view = self._view
        if view is not self._seen:
            self._refresh(view, now)
            self._seen = view
        due_now = []
        while self._heap and self._heap[0][0] <= now:
            due, server = heapq.heappop(self._heap)
            slot = self._slots.get(server)
            if slot is None or slot.next_due != due:
                continue  # superseded by a change of the target, or the target is gone
            target = view.targets[server]
            slot.next_due = next_due(server, target.interval_seconds, due, now)
            heapq.heappush(self._heap, (slot.next_due, server))
            if server not in self._in_flight:  # else the last poll is still running: skip
                due_now.append((target, due))
        return due_now

    def _refresh(self, view: _View, now: datetime) -> None:
        """Follow the targets: slots of removed targets go, new or changed ones are due now."""
        for server in [s for s in self._slots if s not in view.targets]:
            del self._slots[server]
        seen = self._seen.targets if self._seen is not None else {}
        for server, target in view.targets.items():
            if seen.get(server) is target and server in self._slots:
                continue  # the same copy as last time: unchanged
            settings = (
                target.url,
                target.interval_seconds,
                target.timeout_seconds,
                target.verify_tls,
            )
            slot = self._slots.get(server)
            if slot is not None and slot.settings == settings:
                continue
            due = self._first_due(target, now) if slot is None else _floor_ms(now)
            self._slots[server] = _Slot(settings, due)
            heapq.heappush(self._heap, (due, server))

    def _first_due(self, target: TargetState, now: datetime) -> datetime:
        """Where a target's grid starts when this poller first sees it: after its last poll
        (as the previous leader left it), or now if it was never polled."""
        last = self._resume.pop(target.server, None) if self._resume else None
        if last is None:
            return _floor_ms(now)
        due = grid_after(target.server, target.interval_seconds, last.at)
        if due <= now:  # overdue: poll at once, as due at the last grid point passed
            return grid_at_or_before(target.server, target.interval_seconds, now)
        return due

    # --- one poll ---------------------------------------------------------------------------

    async def _poll(
        self, session: _Session, target: TargetState, due: datetime
    ) -> PollResult | None:
        server = target.server
        self._in_flight.add(server)
        try:
            async with session.slots:
                started = self.clock()
                outcome = await probe.probe(
                    session.client_for(target), target.url, target.timeout_seconds
                )
                answered_at = self.clock()
            ended = PollResult(server, target.url, due, started, answered_at, outcome)
            result = await self._record_later(session, ended)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug, not a target's fault: said once, the others are polled
            log.exception("polling %s failed unexpectedly", server)
            return None
        finally:
            self._in_flight.discard(server)
        if self.on_poll is not None:
            self.on_poll(result)
        return result

    # --- recording (in the recorder thread) -------------------------------------------------

    def _record_later(self, session: _Session, ended: PollResult) -> asyncio.Future[PollResult]:
        """The poll as recorded, once the recorder got to it. Polls that end within
        RECORD_DELAY_SECONDS of each other, or while a batch is being recorded, make one batch:
        one commit for all their heartbeats, one thread hand-off for all of them (a hand-off
        and a commit per poll cost a third of the poller's CPU; BENCHMARKS.md, "Collection")."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PollResult] = loop.create_future()
        session.ended.append((ended, future))
        if not session.recording:
            session.recording = True
            loop.call_later(RECORD_DELAY_SECONDS, self._record_next, session, loop)
        return future

    def _record_next(self, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        """(In the loop's thread.) Hand every poll that ended to the recorder."""
        batch = list(session.ended)
        session.ended.clear()
        session.recording = bool(batch)
        if batch:
            loop.run_in_executor(self._db, self._record_batch, session, loop, batch)

    def _record_batch(
        self,
        session: _Session,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[PollResult, asyncio.Future[PollResult]]],
    ) -> None:
        try:
            outcome: list[PollResult] | BaseException = self._record([r for r, _ in batch])
        except Exception as exc:  # a bug: each poll's task says so (_poll logs it)
            outcome = exc

        def deliver() -> None:
            for i, (_, future) in enumerate(batch):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome[i])
            self._record_next(session, loop)

        with contextlib.suppress(RuntimeError):  # the loop closed (stopped): nobody waits
            loop.call_soon_threadsafe(deliver)

    def _record(self, ended: Sequence[PollResult]) -> list[PollResult]:
        """Record polls that ended: the heartbeats of the good ones in one commit, the
        failures that started or changed, every poll's row. The polls as recorded, in order."""
        view = self._view
        results = list(ended)
        good: list[int] = []
        bad: list[int] = []
        for i, result in enumerate(results):
            target = view.targets.get(result.server)
            if self._stopping or target is None or target.url != result.url:
                results[i] = dataclasses.replace(result, dropped=True)
                continue
            outcome = result.outcome
            with self._lock:
                self._rows[result.server] = PollRow(
                    result.server, result.started, outcome.ok, outcome.detail, outcome.seconds
                )
            (good if outcome.ok else bad).append(i)
        if good:
            try:
                receipt = self._record_heartbeats([results[i] for i in good])
            except Exception as exc:
                for i in good:
                    results[i] = dataclasses.replace(results[i], error=self._trouble_with(exc))
            else:
                for i in good:
                    results[i] = dataclasses.replace(results[i], receipt=receipt)
                self._trouble(None)
        for i in bad:
            try:
                event = self._record_failure(results[i], view)
            except Exception as exc:
                results[i] = dataclasses.replace(results[i], error=self._trouble_with(exc))
            else:
                results[i] = dataclasses.replace(results[i], failure_event=event)
        return results

    def _record_heartbeats(self, good: Sequence[PollResult]) -> Receipt:
        """One submit for the heartbeats of these polls; the receipt of their commit."""
        beats = []
        for result in good:
            assert result.outcome.document is not None
            metadata = _metadata(result.url)
            beats += [
                NewEvent(
                    HeartbeatRecorded(**beat, sent_at=result.answered_at),
                    event_id=poll_event_id(result.server, beat["component"], result.due),
                    occurred_at=result.answered_at,
                    metadata=metadata,
                )
                for beat in health.heartbeats(result.outcome.document, result.server)
            ]
        ids = [b.event_id for b in beats]
        try:
            receipt = self.committer.submit(beats, ids)
        except Exception as exc:
            if unavailable_reason(exc) is None and not isinstance(exc, TimeoutError):
                raise
            # The commit may have happened (the connection dropped during COMMIT): the same
            # ids make the retry a duplicate if so.
            time.sleep(RETRY_PAUSE_SECONDS)
            receipt = self.committer.submit(beats, ids)
        with self._lock:
            for result in good:
                self._recorded[result.server] = (None, receipt.last_position or 0)
        return receipt

    def _record_failure(self, result: PollResult, view: _View) -> RecordedEvent | None:
        outcome = result.outcome
        assert outcome.kind is not None and outcome.detail is not None
        if self._known_failure(view, result.server) == outcome.kind:
            return None  # still failing the same way: said already
        event = CollectionFailed(result.server, outcome.kind, outcome.detail, at=result.started)
        recorded = self.commands.record_collection_failure(event, _metadata(result.url))
        if recorded is not None:
            with self._lock:
                self._recorded[result.server] = (outcome.kind, recorded.position)
            log.info("polling %s fails: %s", result.server, outcome.detail)
        return recorded

    def _known_failure(self, view: _View, server: str) -> str | None:
        """How polling `server` fails as far as the log says (None: it works): what this poller
        recorded last, until the state handed over has folded that in; then the state."""
        with self._lock:
            mine = self._recorded.get(server)
        if mine is not None and view.position < mine[1]:
            return mine[0]
        target = view.targets.get(server)
        return target.failure.kind if target is not None and target.failure else None

    def _trouble_with(self, exc: Exception) -> str:
        """Why recording failed, logged once; an error that is not the database's is raised."""
        reason = unavailable_reason(exc)
        if reason is None:
            raise exc
        self._trouble(reason)
        return reason

    def _trouble(self, reason: str | None) -> None:
        """Log when recording starts failing on the database and when it works again, not at
        every poll."""
        if reason == self._record_trouble:
            return
        if reason is None:
            log.warning("polls are recorded again")
        else:
            log.warning("polls cannot be recorded (%s): their answers are dropped", reason)
        self._record_trouble = reason

    # --- the target_polls rows --------------------------------------------------------------

    def flush(self) -> None:
        """Write the rows of the polls that ended since the last flush (one statement)."""
        with self._lock:
            rows, self._rows = self._rows, {}
        if not rows:
            return
        try:
            write_polls(self.engine, list(rows.values()))
        except BaseException:
            with self._lock:  # keep them for the next flush, unless a newer poll replaced one
                self._rows = {**rows, **self._rows}
            raise

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                log.exception("cannot write the last polls")
            else:
                self._trouble(reason)


def _metadata(url: str) -> dict[str, Any]:
    """What the collector's events record about who sent them (like api/heartbeats.py's
    actor_metadata, with the polled host as source)."""
    return {
        "actor": COLLECTOR_ACTOR,
        "role": "agent",
        "source": urlsplit(url).hostname,
        "correlation_id": None,
    }


def targets_due_now(
    targets: Sequence[TargetState], now: datetime
) -> list[tuple[TargetState, datetime]]:
    """Each target as due at `now` (for `Poller.poll` in tests and one-off polls)."""
    return [(t, _floor_ms(now)) for t in targets]
