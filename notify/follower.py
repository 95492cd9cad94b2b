"""The notify follower: the log is the outbox. It follows the log from its checkpoint (row
`notify` of projection_checkpoints), finds the transitions (notify/transitions.py) and writes
one delivery row per channel and transition, in the transaction that moves the checkpoint: a
crash leaves all of a batch or none of it.

Exactly once per transition and channel: a row's id is uuid5(channel / causing event /
trigger) and the insert ignores an id already there, so re-reading events (an older checkpoint,
two schedulers) queues nothing twice.

Per channel: only its triggers (`on`), its servers (`servers`; cluster-wide triggers reach every
channel), when enabled, and only events after it was configured. Then, in this order:
- a silence active at the transition's time that matches it: the row is `suppressed`,
  suppressed_by "silence <id>";
- a flapping component's quiet changes: `suppressed`, "flapping";
- grace (`min_outage_seconds`): a `stale` row waits until expiry + grace; a recovery within
  the grace withdraws it (or its item from a grouped row) if no sender has taken it yet, and
  is itself `suppressed`, "flap". A stale message already on its way is followed by its
  recovery as usual;
- the rest of one sweep's `stale` (one commit's `recovered`) transitions are one row listing
  them (`items`), whose id is its first item's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from domain.events import (
    ChannelConfigured,
    ChannelRemoved,
    RecordedEvent,
    SilenceCreated,
    SilenceEnded,
)
from domain.state import ChannelState, ClusterState, SilenceState
from eventstore.clock import Clock
from eventstore.db import write_connection
from eventstore.store import EventStore
from notify import messages
from notify.tables import FOLLOWER, deliveries
from notify.transitions import CLUSTER_WIDE, FLAP_WINDOW, GROUPED, Transition, TransitionDetector
from projections.readmodel import snapshots
from projections.readmodel.tables import checkpoints

log = logging.getLogger(__name__)

# Fixed forever: delivery ids derive from it, and a receiver drops a repeat by its id.
NAMESPACE = uuid.UUID("6f1d7a52-3c1b-5a7e-9d0e-4b8f2f61c019")


def delivery_id(channel: str, cause: str, trigger: str) -> uuid.UUID:
    """`cause`: the causing event's id (or another stable name, e.g. "report 12")."""
    return uuid.uuid5(NAMESPACE, f"{channel}/{cause}/{trigger}")


def insert_deliveries(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows; a row whose id is already there is left as it is."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        # mypy wants one type per name; both dialects' insert have on_conflict_do_nothing.
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    conn.execute(insert(deliveries).on_conflict_do_nothing(index_elements=["id"]), rows)


def _insert_checkpoint(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    conn.execute(insert(checkpoints).values(name=FOLLOWER).on_conflict_do_nothing())


class _Batch:
    """The transitions of one batch with the channels and silences in force at each."""

    def __init__(self) -> None:
        self.found: list[tuple[Transition, Mapping[str, ChannelState], list[SilenceState]]] = []


class NotifyFollower:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        *,
        public_url: str | None = None,
        batch_size: int = 1_000,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = clock
        self.public_url = public_url or messages.public_url()
        self.batch_size = batch_size
        self._detector: TransitionDetector | None = None

    # --- the pass ---------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Follow the log to its head in batches (one transaction each); returns how many
        events were read (0 when up to date, or while another process holds the checkpoint)."""
        total = 0
        while True:
            read = self._batch()
            if read is None:
                return total
            total += read
            if read < self.batch_size:
                return total

    def _batch(self) -> int | None:
        with write_connection(self.engine) as conn:
            with conn.begin():
                _insert_checkpoint(conn)
            try:
                with conn.begin():
                    position = self._lock_checkpoint(conn)
                    if position is None:
                        return None
                    detector = self._detector_at(position)
                    events = self._read(position)
                    if not events:
                        return 0
                    found = self._feed(detector, events)
                    self._write(conn, found)
                    conn.execute(
                        checkpoints.update()
                        .where(checkpoints.c.name == FOLLOWER)
                        .values(
                            position=events[-1].position,
                            events_applied=checkpoints.c.events_applied + len(events),
                            updated_at=self.clock(),
                        )
                    )
            except BaseException:
                self._detector = None  # folded past a checkpoint that did not move
                raise
            return len(events)

    def _lock_checkpoint(self, conn: sa.Connection) -> int | None:
        """The checkpoint, locked for the transaction; None while another follower holds it
        (PostgreSQL `SKIP LOCKED`; SQLite's write transaction serialises followers)."""
        query = (
            sa.select(checkpoints.c.position)
            .where(checkpoints.c.name == FOLLOWER)
            .with_for_update(skip_locked=True)
        )
        return conn.execute(query).scalar()

    def _read(self, position: int) -> list[RecordedEvent]:
        """The next batch, ending at a commit's end: one sweep's timeouts share recorded_at,
        and cutting them in two would make two grouped messages of them (different ones on
        a re-run with other batch bounds)."""
        events = self.store.read_all(after=position, limit=self.batch_size)
        while len(events) >= self.batch_size:
            more = self.store.read_all(
                after=events[-1].position,
                limit=self.batch_size,
                since=events[-1].recorded_at,
                until=events[-1].recorded_at + timedelta(microseconds=1),
            )
            events.extend(more)
            if len(more) < self.batch_size:
                break
        return events

    # --- the state ---------------------------------------------------------------------------

    def _detector_at(self, position: int) -> TransitionDetector:
        """The detector with everything up to `position` folded in: the one kept from the last
        batch, or (first batch, or another process moved the checkpoint) one started from the
        newest snapshot at least FLAP_WINDOW older than `position`, so that flapping is judged
        the same whoever folded the events before."""
        detector = self._detector
        if detector is not None and detector.state.position == position:
            return detector
        start = 0
        if position:
            try:
                _, at = self.store.event_at_or_before(position)
            except sa.exc.NoResultFound:  # the events up to it are archived away
                start = position
            else:
                start = self.store.last_position_at(at - FLAP_WINDOW)
        state = ClusterState()
        with self.engine.connect() as conn:
            row = snapshots.latest(conn, min(start, position))
        if row is not None:
            state = snapshots.decode(row.state)
        detector = TransitionDetector(state)
        for recorded in self.store.iter_all(after=state.position, up_to=position):
            detector.feed(recorded)  # already handled: only the detector's memory matters
        self._detector = detector
        return detector

    def _feed(self, detector: TransitionDetector, events: list[RecordedEvent]) -> _Batch:
        batch = _Batch()
        state = detector.state
        channels: Mapping[str, ChannelState] = dict(state.channels)
        silences = list(state.silences.values())
        for recorded in events:
            for transition in detector.feed(recorded):
                batch.found.append((transition, channels, silences))
            if isinstance(recorded.event, (ChannelConfigured, ChannelRemoved)):
                channels = dict(state.channels)
            elif isinstance(recorded.event, (SilenceCreated, SilenceEnded)):
                silences = list(state.silences.values())
        return batch

    # --- the rows ----------------------------------------------------------------------------

    def _write(self, conn: sa.Connection, batch: _Batch) -> None:
        now = self.clock()
        for group in _groups(batch.found):
            _, channels, silences = group[0]
            for channel in channels.values():
                items = [t for t, _, _ in group if _wants(channel, t)]
                if not items:
                    continue
                rows, pending = [], []
                for t in items:
                    why = _silenced_by(silences, t) or t.quiet
                    if why is None and t.trigger == "recovered":
                        why = self._flap(conn, channel, t, now)
                    if why is not None:
                        rows.append(self._row(channel, [t], now, suppressed_by=why))
                    else:
                        pending.append(t)
                if pending:
                    rows.append(self._row(channel, pending, now))
                insert_deliveries(conn, rows)

    def _row(
        self,
        channel: ChannelState,
        items: list[Transition],
        now: datetime,
        *,
        suppressed_by: str | None = None,
    ) -> dict[str, Any]:
        first = items[0]
        if len(items) == 1:
            payload = messages.transition(first, self.public_url)
        else:
            payload = messages.grouped(items, self.public_url)
        due = now
        if first.trigger == "stale" and channel.min_outage_seconds and not first.flapping:
            grace = timedelta(seconds=channel.min_outage_seconds)
            due = max(due, max(t.at for t in items) + grace)
        single = len(items) == 1
        return {
            "id": delivery_id(channel.name, str(first.event_id), first.trigger),
            "channel": channel.name,
            "trigger": first.trigger,
            "server": first.server if single else None,
            "component": first.component if single else None,
            "source_position": first.position,
            "state": "suppressed" if suppressed_by else "pending",
            "attempts": 0,
            "last_error": None,
            "suppressed_by": suppressed_by,
            "payload": orjson.dumps(payload).decode(),
            "created_at": now,
            "next_attempt_at": None if suppressed_by else due,
            "claimed_until": None,
            "sent_at": None,
        }

    def _flap(
        self, conn: sa.Connection, channel: ChannelState, t: Transition, now: datetime
    ) -> str | None:
        """For a recovery: "flap" if it came within the channel's grace and the stale message
        it answers has not gone out (it is withdrawn here if still waiting), else None."""
        grace = channel.min_outage_seconds
        if not grace or t.outage_seconds is None or t.outage_seconds >= grace:
            return None
        if t.stale_position is None:
            return None  # the timeout is older than the detector remembers: tell the end
        c = deliveries.c
        candidates = conn.execute(
            sa.select(c.seq, c.state, c.attempts, c.claimed_until, c.payload)
            .where(
                c.channel == channel.name,
                c.trigger == "stale",
                c.source_position <= t.stale_position,
            )
            .order_by(c.source_position.desc())
            .limit(200)
        ).all()
        for row in candidates:
            payload = orjson.loads(row.payload)
            items = payload.get("items", [payload])
            mine = [
                i
                for i in items
                if i.get("source_position") == t.stale_position
                and i.get("server") == t.server
                and i.get("component") == t.component
            ]
            if not mine:
                continue
            if row.state == "suppressed":
                return "flap"
            if row.state != "pending" or row.attempts or row.claimed_until is not None:
                return None  # on its way (or out): its recovery follows it
            rest = [i for i in items if i not in mine]
            waiting = sa.and_(
                c.seq == row.seq,
                c.state == "pending",
                c.attempts == 0,
                c.claimed_until.is_(None),
                c.payload == row.payload,
            )
            values: dict[str, Any]
            if rest:
                values = {"payload": orjson.dumps({**payload, "items": rest}).decode()}
            else:
                values = {"state": "suppressed", "suppressed_by": "flap", "next_attempt_at": None}
            done = conn.execute(deliveries.update().where(waiting).values(**values)).rowcount
            return "flap" if done else None
        return "flap"  # no stale message for it on this channel: its end is no news either


def _wants(channel: ChannelState, t: Transition) -> bool:
    if not channel.enabled or t.trigger not in channel.on:
        return False
    if channel.configured_position >= t.position:
        return False  # configured after the event: it was not there to hear it
    if t.trigger in CLUSTER_WIDE or channel.servers is None:
        return True
    return t.server in channel.servers


def _silenced_by(silences: Iterable[SilenceState], t: Transition) -> str | None:
    for silence in silences:
        if silence.active(t.at) and silence.matches(t.server, t.component):
            return f"silence {silence.id}"
    return None


def _groups(found):
    """Runs of one trigger's transitions with the same group key (one sweep, one commit) among
    the others, in order of their first one; quiet ones and the rest stand alone."""
    groups: list[list] = []
    open_: dict[tuple, list] = {}
    for entry in found:
        t = entry[0]
        if t.trigger not in GROUPED or t.group is None or t.quiet is not None:
            groups.append([entry])
            continue
        key = (t.trigger, t.group, id(entry[1]), id(entry[2]))
        run = open_.get(t.trigger)
        if run is not None and run[0] == key:
            run[1].append(entry)
            continue
        members = [entry]
        open_[t.trigger] = [key, members]
        groups.append(members)
    groups.sort(key=lambda g: g[0][0].position)
    return groups
