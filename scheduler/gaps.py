"""Monitor gaps: when nobody was watching, record it once instead of flooding timeouts.

The rule, checked by a scheduler when it becomes leader, before its first sweep:

- `watched_until` = the last time a leading scheduler recorded that it was watching
  (`scheduler_liveness.last_seen_at`, written at most every LIVENESS_EVERY seconds while it
  leads), or the `resumed_at` of the last recorded gap if later (a gap is recorded once, even
  if an API process recorded it at its start-up before the scheduler was back); when neither
  exists, the `recorded_at` of the newest event in the log.
- No gap if `now - watched_until <= gap_threshold`, where
  `gap_threshold = max(2 * heartbeat frequency, 30 s, 3 * sweep interval)`.
- No gap either if the log shows the API kept recording: from `watched_until` to now, no
  stretch longer than `gap_threshold` passed without an event recorded. Only the scheduler
  was away; components could report, those that did not are truly stale, and their timeouts
  (emitted now) keep their exact logical expiry.
- Otherwise the whole monitor was down: append one
  `MonitorResumed(down_since=<start of the first such silence>, resumed_at=now)`. The fold and
  `rules.deadline` then count every component's deadline from `resumed_at` when that is later
  than its last heartbeat: one full timeout after the restart, no timeout for components that
  report within it. Heartbeats the API recorded between its restart and this takeover (the API
  usually comes up first) do not hide the gap, and neither do those it recorded between the
  last liveness write and the shutdown (liveness is up to LIVENESS_EVERY old when everything
  stops together): what counts is a silence anywhere after `watched_until`.
- Why this threshold: after two heartbeat periods of silence every live component has missed
  a beat it could not deliver, so timeouts falling in that window say nothing about the
  components. Shorter pauses (a leader failover takes about a second; liveness rows are at most
  LIVENESS_EVERY seconds old) are not gaps.
- Known limit: a whole-service outage that starts and ends while the scheduler alone is down
  (after the API recorded events past `watched_until`) is not detected; its timeouts are
  emitted with their exact expiry.
- An empty log (nothing known, nothing to judge) records no gap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from eventstore.events import MONITOR_STREAM, MonitorResumed
from eventstore.store import ConcurrencyError, EventStore, NewEvent, RecordedEvent
from eventstore.tables import events
from projections.state import Configuration
from scheduler.tables import scheduler_liveness

LIVENESS_EVERY = timedelta(seconds=5)
MIN_GAP = timedelta(seconds=30)


def gap_threshold(config: Configuration, sweep_interval_seconds: float) -> timedelta:
    return max(
        timedelta(seconds=2 * config.heartbeat_frequency_seconds),
        MIN_GAP,
        timedelta(seconds=3 * sweep_interval_seconds),
    )


def record_liveness(engine: sa.Engine, detector: str, leading_since: datetime, now: datetime):
    """Upsert this scheduler's row: it leads and was watching at `now`."""
    insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert
    statement = insert(scheduler_liveness).values(
        detector=detector, leading_since=leading_since, last_seen_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[scheduler_liveness.c.detector],
        set_={"leading_since": leading_since, "last_seen_at": now},
    )
    with engine.begin() as conn:
        conn.execute(statement)


def last_liveness(engine: sa.Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(scheduler_liveness.c.last_seen_at))).scalar()


def _first_silence(
    engine: sa.Engine, since: datetime, until: datetime, longer_than: timedelta
) -> datetime | None:
    """When the first stretch of more than `longer_than` without an event recorded began in
    (`since`, `until`]: `since` or the recorded_at of the event before it; None if events kept
    coming. Reads the recorded_at index from `since` on, and stops at the first silence."""
    query = (
        sa.select(events.c.recorded_at)
        .where(events.c.recorded_at > since, events.c.recorded_at <= until)
        .order_by(events.c.recorded_at)
    )
    previous = since
    with engine.connect() as conn, conn.execution_options(yield_per=10_000).execute(query) as rows:
        for (recorded_at,) in rows:
            if recorded_at - previous > longer_than:
                return previous
            previous = recorded_at
    return previous if until - previous > longer_than else None


def _last_recorded(engine: sa.Engine) -> datetime | None:
    with engine.connect() as conn:
        last = sa.select(sa.func.max(events.c.position)).scalar_subquery()
        return conn.execute(
            sa.select(events.c.recorded_at).where(events.c.position == last)
        ).scalar()


def _last_resumed(store: EventStore, monitor_version: int) -> datetime | None:
    """When the last recorded gap ended: a gap already recorded (by another scheduler, or by
    an API process at start-up) is not recorded again."""
    if not monitor_version:
        return None
    [last] = store.read_stream(MONITOR_STREAM, from_version=monitor_version)
    return getattr(last.event, "resumed_at", None)


def resume_after_gap(
    store: EventStore,
    now: datetime,
    *,
    config: Configuration,
    sweep_interval_seconds: float,
    detector: str,
) -> RecordedEvent | None:
    """Append `MonitorResumed` if the monitor was down (see the module docstring); returns it,
    or None when there was no gap."""
    engine = store.engine
    threshold = gap_threshold(config, sweep_interval_seconds)
    monitor_version = store.stream_version(MONITOR_STREAM)
    known = [t for t in (last_liveness(engine), _last_resumed(store, monitor_version)) if t]
    watched_until = max(known) if known else _last_recorded(engine)
    if watched_until is None or now - watched_until <= threshold:
        return None
    down_since = _first_silence(engine, watched_until, now, threshold)
    if down_since is None:
        return None
    event = MonitorResumed(down_since=down_since, resumed_at=now, detector=detector)
    try:
        result = store.append([NewEvent(event)], expected_version=monitor_version)
    except ConcurrencyError:  # another scheduler recorded this gap a moment ago
        return None
    return result.recorded[0]
