"""The live tail of the log: one follower per worker process, shared by its live streams.

Each SSE stream used to poll the log on its own every `SSE_POLL_SECONDS`: a worker serving 200
idle dashboards made 400 queries a second to learn that nothing happened. Now one follower
thread (a greenlet under gevent) per process reads what is appended, woken by the store's
NOTIFY on PostgreSQL (polling on SQLite), renders each event once, and keeps the most recent
ones in memory. Streams wait on a condition and copy frames from there. A stream that starts (or
falls) further behind than the memory reaches reads those events from the store itself, page by
page, until it reaches the tail. The follower runs while at least one stream is open.

Ordering: the follower reads the log in position order after the last position it holds, like
any reader (the store's appends commit in position order), so the frames it holds are every
event after `base` up to `head`, with no gap and no repeat.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator

from eventstore.listener import Listener
from eventstore.store import EventStore, RecordedEvent

log = logging.getLogger(__name__)

Frame = tuple[int, bytes]  # (position, the event rendered for the stream)

PAGE = 500  # events per read, as a stream reads them
CATCH_UP_READS = 2  # store reads at once per worker for streams behind the tail


def _position(frame: Frame) -> int:
    return frame[0]


class LogTail:
    def __init__(
        self,
        store: EventStore,
        render: Callable[[RecordedEvent], bytes],
        *,
        poll_seconds: float = 0.5,
        keep: int = 2000,
    ):
        self.store = store
        self.render = render
        self.poll_seconds = poll_seconds  # the fallback when no NOTIFY wakes the follower
        self.keep = keep
        self._reset()
        # A forked worker starts with no follower (threads do not survive a fork) and with a
        # condition that no thread of the parent can be holding. Weakly: the tail may go first.
        reset = weakref.WeakMethod(self._reset)
        os.register_at_fork(after_in_child=lambda: (method := reset()) and method())

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._catching_up = threading.BoundedSemaphore(CATCH_UP_READS)
        self._frames: list[Frame] = []
        self._base: int | None = None  # every event with base < position <= head is in _frames
        self._head: int | None = None
        self._subscribers = 0
        self.follower: threading.Thread | None = None  # the thread following the log, if any

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[LogTail]:
        """Keep the follower running while the caller streams."""
        with self._cond:
            self._subscribers += 1
            self._ensure_follower()
        try:
            yield self
        finally:
            with self._cond:
                self._subscribers -= 1

    def frames_from_store(self, after: int) -> list[Frame]:
        """For a stream behind the tail: the next page after `after`, read from the store.
        At most CATCH_UP_READS run at once per worker: hundreds of dashboards resuming from
        far back queue here for the database instead of taking every pooled connection from
        the other requests (measured: /cluster took 28 s behind 390 such streams)."""
        with self._catching_up:
            page = self.store.read_all(after, PAGE)
        return [(r.position, self.render(r)) for r in page]

    def stop(self) -> None:
        """Wait for the follower to end once no stream is open (it notices within
        `poll_seconds`): for a clean shutdown of an app, as its tests do."""
        follower = self.follower
        if follower is not None:
            follower.join(self.poll_seconds + 5)

    def frames_after(self, after: int, timeout: float) -> list[Frame] | None:
        """The frames of the events after position `after`, waiting up to `timeout` seconds
        for one; [] if none came. None when `after` is older than what the tail holds: the
        caller reads those events from the store."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._ensure_follower()  # one that ended by surprise is replaced
                if self._head is not None:  # set with _base, once the follower read the head
                    assert self._base is not None  # set together with _head
                    if after < self._base:
                        return None
                    if after < self._head:
                        start = bisect.bisect_right(self._frames, after, key=_position)
                        return self._frames[start : start + PAGE]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _ensure_follower(self) -> None:
        """Start following the log if nobody does (called holding the condition)."""
        if self.follower is None:
            self.follower = threading.Thread(
                target=self._follow, name="clustermon-log-tail", daemon=True
            )
            self.follower.start()

    def _stop_following(self) -> None:
        """Forget the tail (called holding the condition, by the follower as it ends). Streams
        still waiting start a new follower when their wait ends: at most one per wait, so a
        follower that keeps failing at once cannot turn into a busy loop."""
        self._frames, self._base, self._head = [], None, None
        self.follower = None

    def _follow(self) -> None:
        listener = None
        failing = False
        try:
            listener = Listener(self.store.engine)
            while True:
                try:
                    if self._base is None:
                        head = self.store.head_position()
                        with self._cond:
                            self._base = self._head = head
                            self._cond.notify_all()
                    while self._read_more():
                        pass
                    if failing:
                        log.warning("live tail: reading the log again")
                        failing = False
                except Exception:
                    if not failing:  # once per outage, not every poll while the database is down
                        log.exception("live tail: reading the log failed; retrying")
                        failing = True
                with self._cond:
                    if self._subscribers == 0:  # nobody streams: stop until someone does
                        self._stop_following()
                        return
                listener.wait(self.poll_seconds)
        finally:
            if listener is not None:
                listener.close()
            with self._cond:
                if self.follower is threading.current_thread():  # ended by surprise
                    self._stop_following()

    def _read_more(self) -> bool:
        """Read one page after the head into the tail; True if it was a full page."""
        assert self._head is not None
        page = self.store.read_all(self._head, PAGE)
        if not page:
            return False
        frames = [(r.position, self.render(r)) for r in page]
        with self._cond:
            self._frames.extend(frames)
            self._head = frames[-1][0]
            if len(self._frames) > self.keep:
                dropped = len(self._frames) - self.keep
                self._base = self._frames[dropped - 1][0]
                del self._frames[:dropped]
            self._cond.notify_all()
        return len(page) == PAGE
