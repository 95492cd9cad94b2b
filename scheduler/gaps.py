"""Monitor gaps: when nobody was watching, record it once instead of flooding timeouts.

The rule:

- The monitor was last *alive* at the newest of (a) the last time a leading scheduler recorded
  that it was watching (`scheduler_liveness.last_seen_at`, written at most every
  LIVENESS_EVERY seconds while leading) and (b) the `recorded_at` of the newest event in the log
  (the API was accepting heartbeats then, so components could report).
- When a scheduler becomes leader at `now` and `now - last_alive` exceeds
  `gap_threshold = max(2 * heartbeat frequency, 30 s, 3 * sweep interval)`, it appends one
  `MonitorResumed(down_since=last_alive, resumed_at=now)` before its first sweep. The fold and
  `rules.deadline` then count every component's deadline from `resumed_at` if that is later
  than its last heartbeat: one full timeout after the restart, and no timeout at all for
  components that report within it.
- Why this threshold: after two heartbeat periods of silence every live component has missed
  a beat it could not deliver, so timeouts falling in that window say nothing about the
  components. Shorter pauses (a leader failover takes a few seconds; liveness rows are at most
  LIVENESS_EVERY seconds old) are not gaps, and the timeouts they delay are still stamped with
  their exact logical expiry. A scheduler that was down while the API kept recording heartbeats
  is not a gap either (b): components could report, and those that did not are truly stale.
- An empty log (nothing known, nothing to judge) records no gap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from eventstore.events import MONITOR_STREAM, MonitorResumed
from eventstore.store import ConcurrencyError, EventStore, NewEvent, RecordedEvent
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


def resume_after_gap(
    store: EventStore,
    now: datetime,
    *,
    last_event_at: datetime | None,
    config: Configuration,
    sweep_interval_seconds: float,
    detector: str,
) -> RecordedEvent | None:
    """Append `MonitorResumed` if the monitor was down longer than the gap threshold (see the
    module docstring); returns it, or None when there was no gap. Call it on becoming leader,
    before the first sweep, with the index's state followed up to date."""
    seen = [t for t in (last_liveness(store.engine), last_event_at) if t is not None]
    if not seen:
        return None
    last_alive = max(seen)
    if now - last_alive <= gap_threshold(config, sweep_interval_seconds):
        return None
    event = MonitorResumed(down_since=last_alive, resumed_at=now, detector=detector)
    try:
        result = store.append(
            [NewEvent(event)], expected_version=store.stream_version(MONITOR_STREAM)
        )
    except ConcurrencyError:  # another scheduler recorded this gap a moment ago
        return None
    return result.recorded[0]
