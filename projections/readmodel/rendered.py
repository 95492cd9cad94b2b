"""The current view kept serialized and up to date, for `GET /cluster` on a large cluster.

Evaluating `view.cluster_view` for 10,000 servers builds 50,000 dicts per request (hundreds of
ms here). Almost none of it changes between two requests: a server's entry changes when its
state changes (a new folded `ServerState` object: the projection's copy-on-write fold shares
untouched servers between states), when `now` crosses a point where its staleness or a stale
reason's wording changes (known from its deadlines and heartbeat ages), or when something
cluster-wide changes (the sync references, the timeouts, a monitor gap). So `ViewRenderer`
keeps every server's entry as JSON bytes with the interval of `now` over which it holds, and
re-evaluates only the entries that changed or expired.

What changes with every `now` is `heartbeat.age_seconds`. Each entry is stored as a `%`-format
template with one `%d` per age, written as `<milliseconds>e-3` (a valid JSON number equal to
`round(age, 3)`). Consecutive servers form chunks of 64, each one template, so a new `now`
costs one C-level format per chunk: at a whole-millisecond `now` (the API uses whole seconds)
each age in milliseconds is `now_ms - B`, with `B` fixed per component (`_fast_b`). Ages whose
rounding depends on the float (an exact half millisecond) and any `now` off the millisecond
grid are computed exactly as the view does (`_exact_ms`). A chunk keeps its output for the last
`now`, so within one second only the chunks with a changed server are formatted again; the
body is handed out as the list of chunk outputs (`render_parts`), never joined into one buffer.

A page of the view (`render_page`: a name filter, keyset paging) fills in only the entries it
shows, one format each, so a page of 100 servers of 10,000 costs 100 formats.

The result equals `orjson.dumps(cluster_view(state, now))` after JSON decoding, for any sequence
of states and times (tests/unit/test_rendered.py); a page equals `view.page_of` of it. States
are treated as values: a server object seen before is assumed unchanged (true of the states the
read model hands out, which readers never mutate; copy-on-write folds tell which servers they
touched: `read.changed_servers`).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from operator import attrgetter, sub
from typing import cast

import orjson

from domain import rules
from domain.durations import duration_span
from domain.state import ClusterState, CollectionFailure, ServerState
from projections.readmodel.current import changed_servers
from projections.readmodel.view import (
    Judge,
    PageMember,
    ServerSelection,
    collection_failure,
    header,
    server_entry,
)

_SLOT, _SLOT_FORMAT = b'"age_seconds":0.0', b'"age_seconds":%de-3'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SECOND = 1_000_000
_NEVER = 1 << 62  # beyond any time we deal with, in microseconds
# Within this many microseconds of `now`, float seconds are exact to well below a microsecond:
# `int(age)` and the millisecond rounding then follow integer arithmetic (see _fast_ms).
_SAFE_AGE = 2**32 * _SECOND


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _exact_ms(age_us: int) -> int:
    """`round(age, 3)` of the view as an integer of milliseconds, for any age: `"<ms>e-3"`
    parses to the same float (`round` returns the float nearest to that decimal)."""
    return round(round(age_us / _SECOND, 3) * 1000)


def _fast_b(last_us: int) -> int | None:
    """B with `age in ms = now_ms - B` for every whole-millisecond now (within _SAFE_AGE), or
    None when the age is an exact half millisecond, whose rounding depends on the float."""
    if last_us % 1000 == 500:
        return None
    # Not a tie: round(age) is the nearest millisecond, floor((age_us + 500) / 1000).
    return -((500 - last_us) // 1000)


def _age_us_span(first: int, last: int) -> tuple[int, int]:
    """The ages in microseconds whose `int(seconds)` lies in [first, last] (int truncates)."""
    low = first * _SECOND if first > 0 else (first - 1) * _SECOND + 1
    high = (last + 1) * _SECOND - 1 if last >= 0 else last * _SECOND
    return low, high


class _Entry:
    """One server's entry: its template, ages and the interval of `now` it holds for."""

    __slots__ = ("b", "high", "last_us", "low", "template", "ties")

    template: bytes
    b: list[int]  # per age: B of _fast_b (0 for a tie)
    last_us: list[int]  # per age: the last heartbeat, in microseconds
    ties: list[int]  # indexes of the ages whose B is None
    low: int
    high: int


class _Chunk:
    """Consecutive servers of the document: their templates joined, with their formatted
    output for the last `now` (`at`), so an unchanged chunk costs nothing within a time."""

    __slots__ = ("at", "b", "bounds", "last_us", "out", "template", "ties")

    template: bytes
    b: list[int]
    last_us: list[int]
    ties: list[int]
    bounds: tuple[int, int]
    at: int | None
    out: bytes


_CHUNK = 64  # servers per chunk: a change re-joins one chunk, a new time formats them all


class _Counts:
    """The counts the sync references are drawn from, for the components current at `now_us`
    and for all components, kept up to date as components change and `now` moves.

    A component is current while `now <= threshold` (its deadline, or just before a recorded
    timeout); `_thresholds` is sorted, so moving `now` visits only the components whose
    threshold lies between the old and the new time."""

    def __init__(self, now_us: int):
        self.now_us = now_us
        self.current: tuple[dict, dict] = ({}, {})
        self.everyone: tuple[dict, dict] = ({}, {})
        self.current_count = 0
        self._thresholds: list[tuple[int, str, str]] = []
        self._of: dict[tuple[str, str], tuple[int | None, object]] = {}

    @staticmethod
    def _change(counts: tuple[dict, dict], c, step: int) -> None:
        rules.count_for_references(c, *counts, step)

    def add(self, c, threshold: int | None) -> None:
        key = (c.server, c.name)
        self._of[key] = (threshold, c)
        self._change(self.everyone, c, 1)
        if threshold is not None:
            insort(self._thresholds, (threshold, c.server, c.name))
            if threshold >= self.now_us:
                self._change(self.current, c, 1)
                self.current_count += 1

    def remove(self, server: str, name: str) -> None:
        threshold, c = self._of.pop((server, name))
        self._change(self.everyone, c, -1)
        if threshold is not None:
            entries = self._thresholds
            del entries[bisect_left(entries, (threshold, server, name))]
            if threshold >= self.now_us:
                self._change(self.current, c, -1)
                self.current_count -= 1

    def move(self, now_us: int) -> None:
        old, entries = self.now_us, self._thresholds
        self.now_us = now_us
        if now_us == old:
            return
        low, high, step = (old, now_us, -1) if now_us > old else (now_us, old, 1)
        start, end = bisect_left(entries, (low,)), bisect_left(entries, (high,))
        if 2 * (end - start) > len(entries):  # most flip: count afresh
            self.current, self.current_count = ({}, {}), 0
            for _, server, name in entries[bisect_left(entries, (now_us,)) :]:
                self._change(self.current, self._of[(server, name)][1], 1)
                self.current_count += 1
            return
        for _, server, name in entries[start:end]:
            self._change(self.current, self._of[(server, name)][1], step)
            self.current_count += step

    def references(self) -> rules.References:
        if self.current_count:
            return rules.choose_references(*self.current, self.everyone[1])
        return rules.choose_references(*self.everyone)


def _context(state: ClusterState) -> tuple:
    """What every entry depends on besides its own server: a change re-evaluates them all.
    The heartbeat frequency sets the clock-skew limit (rules.skew_limit_seconds)."""
    config = state.configuration
    return (
        config.stale_timeout_seconds,
        config.web_stale_timeout_seconds,
        config.heartbeat_frequency_seconds,
        state.monitor_resumed_at,
    )


_TEMPLATE, _B, _LAST_US, _OUT = map(attrgetter, ("template", "b", "last_us", "out"))


class ViewRenderer:
    """`render(state, now)` = the JSON of `cluster_view(state, now)`, kept incrementally.

    Thread-safe (one lock: rendering is quick once warm). One per process and read model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._context: tuple | None = None
        self._state: ClusterState | None = None
        self._last: tuple[ClusterState, datetime, list[bytes]] | None = None

    def render(self, state: ClusterState, now: datetime) -> bytes:
        return b"".join(self.render_parts(state, now))

    def render_parts(self, state: ClusterState, now: datetime) -> list[bytes]:
        """The JSON body as consecutive pieces (one per chunk of servers). A server can write
        them one after the other: joining 10,000 servers' ~9 MB into one fresh buffer costs more
        than the rest of a warm read (page faults of new memory, on every request)."""
        with self._lock:
            last = self._last
            if last is not None and last[0] is state and last[1] == now:
                return last[2]
            parts = self._format(state, now, self._sync(state, now))
            self._last = (state, now, parts)
            return parts

    def render_page(
        self, state: ClusterState, now: datetime, selection: ServerSelection, page: PageMember
    ) -> list[bytes]:
        """The JSON of `view.page_of(cluster_view(state, now), selection, page)`: the entries of
        the servers `selection` picks, each filled in alone, and the `page` member."""
        with self._lock:
            now_us = self._sync(state, now)
            names, next_after = selection.pick(self._order)
            on_grid = now_us % 1000 == 0
            entries = [_format_entry(self._entries[name], now_us, on_grid) for name in names]
            head = orjson.dumps(header(state, now, len(self._order)))[:-1]
            member = orjson.dumps(page(len(names), next_after))
            return [head, b',"servers":[', b",".join(entries), b'],"page":', member, b"}"]

    # --- keeping the entries ----------------------------------------------------------------

    def _reset(self, state: ClusterState, now_us: int) -> None:
        self._context = _context(state)
        self._judge = Judge(state.configuration, state.monitor_resumed_at)
        self._servers: dict[str, ServerState] = {}
        self._entries: dict[str, _Entry] = {}
        self._order: list[str] = []  # server names, sorted
        self._lows: list[tuple[int, str]] = []
        self._highs: list[tuple[int, str]] = []
        self._counts = _Counts(now_us)
        self._refs: rules.References | None = None
        self._now_us = now_us
        self._chunks: list[_Chunk] | None = None
        self._chunk_of: dict[str, int] = {}
        self._dirty: set[int] = set()
        self._state = None
        self._failures: dict[str, CollectionFailure] = {}  # of the servers polled in vain

    def _threshold(self, c, expiry: datetime | None) -> int | None:
        """The last microsecond at which `c` is current (None: never)."""
        if expiry is None:
            return None
        threshold = _us(expiry)
        if c.timed_out_at is not None:
            threshold = min(threshold, _us(c.timed_out_at) - 1)
        return threshold

    def _sync_servers(self, state: ClusterState) -> set[str]:
        """Follow `state`'s servers; returns the names whose entry must be evaluated again."""
        new, old, counts = state.servers, self._servers, self._counts
        hint = changed_servers(self._state, state)
        if hint is None:
            changed = [name for name, server in new.items() if old.get(name) is not server]
            added = sum(1 for name in changed if name not in old)
            gone: Collection[str] = old.keys() - new.keys() if len(old) + added != len(new) else ()
        else:
            changed = [name for name in hint if name in new and old.get(name) is not new[name]]
            added = sum(1 for name in changed if name not in old)
            gone = [name for name in hint if name in old and name not in new]
        for name in chain(changed, gone):
            previous = old.get(name)
            if previous is not None:
                for c in previous.components.values():
                    counts.remove(c.server, c.name)
            server = new.get(name)
            if server is None:
                del old[name]
                self._drop(name)
                del self._order[bisect_left(self._order, name)]
                continue
            if previous is None:
                insort(self._order, name)
            old[name] = server
            for c in server.components.values():
                counts.add(c, self._threshold(c, self._judge.deadline(c)))
        if added or gone:
            self._chunks = None
        return set(changed)

    def _sync_failures(self, state: ClusterState) -> set[str]:
        """Servers whose polls started or stopped failing, or fail otherwise: their components'
        reasons say so. A target's change does not replace its `ServerState`, so it is followed
        apart (one pass over the targets, a few at most, per new state)."""
        failures = {
            name: target.failure
            for name, target in state.targets.items()
            if target.failure is not None
        }
        old = self._failures
        self._failures = failures
        if not old and not failures:
            return set()
        changed = {n for n in old.keys() | failures.keys() if old.get(n) != failures.get(n)}
        return changed & self._servers.keys()

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            del self._lows[bisect_left(self._lows, (entry.low, name))]
            del self._highs[bisect_left(self._highs, (entry.high, name))]

    def _expired(self, now_us: int) -> set[str]:
        """Servers whose entry does not hold at `now_us` (each held at the previous now)."""
        if now_us > self._now_us:
            return {name for _, name in self._highs[: bisect_left(self._highs, (now_us,))]}
        if now_us < self._now_us:
            return {name for _, name in self._lows[bisect_left(self._lows, (now_us + 1,)) :]}
        return set()

    def _sync(self, state: ClusterState, now: datetime) -> int:
        """Bring every entry up to `state` at `now`; returns `now` in microseconds."""
        now_us = _us(now)
        if _context(state) != self._context:
            self._reset(state, now_us)
        self._config = state.configuration
        stale = set()
        if state is not self._state:
            stale = self._sync_servers(state) | self._sync_failures(state)
        self._state = state
        stale |= self._expired(now_us)
        self._now_us = now_us
        self._counts.move(now_us)
        refs = self._counts.references()
        if refs != self._refs:
            self._refs = refs
            stale = set(self._servers)
        if stale:
            self._evaluate(stale, now, now_us)
        return now_us

    def _evaluate(self, names: set[str], now: datetime, now_us: int) -> None:
        # Re-sorting every bound beats inserting one by one only when most entries change.
        many = len(names) > len(self._entries) // 4
        for name in names:
            if many:
                self._entries.pop(name, None)
            else:
                self._drop(name)
            self._entries[name] = entry = self._entry(self._servers[name], now, now_us)
            if not many:
                insort(self._lows, (entry.low, name))
                insort(self._highs, (entry.high, name))
        if many:
            self._lows = sorted((e.low, n) for n, e in self._entries.items())
            self._highs = sorted((e.high, n) for n, e in self._entries.items())
        if self._chunks is not None:
            chunk_of = self._chunk_of
            self._dirty.update(chunk_of[name] for name in names)

    def _entry(self, server: ServerState, now: datetime, now_us: int) -> _Entry:
        judge, low, high = self._judge, -_NEVER, _NEVER
        judged = []
        for name in sorted(server.components):
            c = server.components[name]
            beat = judge.beat(c, now)
            judged.append((c, beat))
            state, _, expiry = beat
            # Where the beat's state or stale_since changes: at a recorded timeout (when a
            # deadline exists) and just after the deadline.
            if c.timed_out_at is not None and expiry is not None:
                t = _us(c.timed_out_at)
                if now_us >= t:
                    low = max(low, t)
                else:
                    high = min(high, t - 1)
            if expiry is not None:
                e = _us(expiry)
                if now_us > e:
                    low = max(low, e + 1)
                else:
                    high = min(high, e)
            if state == "stale" and c.last_heartbeat_at is not None:
                # The stale reason words the age (format_duration of int(seconds)).
                last_us = _us(c.last_heartbeat_at)
                age_us = now_us - last_us
                if abs(age_us) >= _SAFE_AGE:
                    low, high = max(low, now_us), min(high, now_us)
                else:
                    first, last = duration_span(int(age_us / _SECOND))
                    age_low, age_high = _age_us_span(first, last)
                    low, high = max(low, last_us + age_low), min(high, last_us + age_high)
        # _sync sets the references before evaluating any entry.
        refs = cast("rules.References", self._refs)
        failure = collection_failure(cast(ClusterState, self._state), server.name)
        entry = server_entry(server, judged, refs, self._config, now, failure)
        b: list[int] = []
        lasts: list[int] = []
        ties: list[int] = []
        for component, (c, _) in zip(entry["components"], judged, strict=True):
            if c.last_heartbeat_at is not None:  # else "age_seconds" stays null
                component["heartbeat"]["age_seconds"] = 0.0  # the slot, found below
                last_us = _us(c.last_heartbeat_at)
                fast = _fast_b(last_us)
                if fast is None:
                    ties.append(len(b))
                b.append(fast if fast is not None else 0)
                lasts.append(last_us)
        # `"age_seconds":0.0` can only be the key itself: a quote inside a JSON string is
        # escaped, so no string value contains these bytes.
        parts = orjson.dumps(entry).replace(b"%", b"%%").split(_SLOT)
        if len(parts) != len(b) + 1:
            raise RuntimeError(f"{len(parts) - 1} age slots in {server.name!r}, not {len(b)}")
        out = _Entry()
        out.template = _SLOT_FORMAT.join(parts)
        out.b, out.last_us, out.ties, out.low, out.high = b, lasts, ties, low, high
        return out

    # --- the document -----------------------------------------------------------------------

    def _build_chunk(self, names: list[str], first: bool) -> _Chunk:
        entries = list(map(self._entries.__getitem__, names))
        chunk = _Chunk()
        chunk.template = (b"" if first else b",") + b",".join(map(_TEMPLATE, entries))
        chunk.b = list(chain.from_iterable(map(_B, entries)))
        chunk.last_us = lasts = list(chain.from_iterable(map(_LAST_US, entries)))
        chunk.ties, offset = [], 0
        for e in entries:
            chunk.ties.extend(offset + i for i in e.ties)
            offset += len(e.b)
        chunk.bounds = (min(lasts), max(lasts)) if lasts else (0, 0)
        chunk.at, chunk.out = None, b""
        return chunk

    def _format(self, state: ClusterState, now: datetime, now_us: int) -> list[bytes]:
        order, chunks = self._order, self._chunks
        if chunks is None:  # servers came or went: cut the document afresh
            self._chunks = chunks = [
                self._build_chunk(order[i : i + _CHUNK], i == 0)
                for i in range(0, len(order), _CHUNK)
            ]
            self._chunk_of = {name: i // _CHUNK for i, name in enumerate(order)}
            self._dirty = set()
        for i in self._dirty:
            chunks[i] = self._build_chunk(order[i * _CHUNK : (i + 1) * _CHUNK], i == 0)
        self._dirty = set()
        on_grid = now_us % 1000 == 0
        for chunk in chunks:
            if chunk.at != now_us:
                chunk.out = _format_chunk(chunk, now_us, on_grid)
                chunk.at = now_us
        head = orjson.dumps(header(state, now, len(order)))[:-1]
        return [head + b',"servers":[', *map(_OUT, chunks), b"]}"]


def _format_chunk(chunk: _Chunk, now_us: int, on_grid: bool) -> bytes:
    """The chunk's JSON at `now_us`: its template with every age filled in."""
    return _fill(chunk.template, chunk.b, chunk.last_us, chunk.ties, chunk.bounds, now_us, on_grid)


def _format_entry(entry: _Entry, now_us: int, on_grid: bool) -> bytes:
    """One server's JSON at `now_us` (a page shows entries, not chunks)."""
    lasts = entry.last_us
    bounds = (min(lasts), max(lasts)) if lasts else (0, 0)
    return _fill(entry.template, entry.b, lasts, entry.ties, bounds, now_us, on_grid)


def _fill(
    template: bytes,
    b: list[int],
    lasts: list[int],
    ties: list[int],
    bounds: tuple[int, int],
    now_us: int,
    on_grid: bool,
) -> bytes:
    """`template` with its ages at `now_us` filled in (see _fast_b and _exact_ms)."""
    oldest, newest = bounds
    if on_grid and now_us - oldest < _SAFE_AGE and newest - now_us < _SAFE_AGE:
        fast = map(sub, repeat(now_us // 1000, len(b)), b)
        if not ties:
            return template % tuple(fast)
        ages = list(fast)
        for i in ties:
            ages[i] = _exact_ms(now_us - lasts[i])
    else:
        ages = [_exact_ms(now_us - last) for last in lasts]
    return template % tuple(ages)
