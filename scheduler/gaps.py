"""Monitor gaps: when nobody was watching, record it once instead of flooding timeouts.

The rule, checked by a scheduler when it becomes leader, before its first sweep:

- `watched_until` = the last time a leading scheduler recorded that it was watching
  (`scheduler_liveness.last_seen_at`, written at most every LIVENESS_EVERY seconds while it
  leads), or the `resumed_at` of the last recorded gap if later (a gap is recorded once, even
  if an API process recorded it at its start-up before the scheduler was back); when neither
  exists, the `recorded_at` of the newest event in the log.
- No gap if `now - watched_until <= gap_threshold`, where
  `gap_threshold = max(2 * heartbeat frequency, 30 s, 3 * sweep interval)`.
- Heartbeats recorded within STOP_WINDOW after `watched_until` came before the stop, not after
  it: when the API and the scheduler stop together, the last liveness write is up to
  LIVENESS_EVERY (and one election tick) old. `stopped` = the last event recorded in that
  window, else `watched_until`.
- No gap either if the log shows the API kept recording: the first event recorded after
  `stopped` came within `gap_threshold` of it. Only the scheduler was away; components could
  report, those that did not are truly stale, and their timeouts (emitted now) keep their
  exact logical expiry.
- Otherwise the whole monitor was down: append one
  `MonitorResumed(down_since=stopped, resumed_at=now)`. The fold and `rules.deadline` then
  count every component's deadline from `resumed_at` when that is later than its last
  heartbeat: one full timeout after the restart, no timeout for components that report within
  it. Heartbeats the API recorded between its restart and this takeover (the API usually comes
  up first) do not hide the gap: what counts is the silence right after `stopped`.
- Why this threshold: after two heartbeat periods of silence every live component has missed
  a beat it could not deliver, so timeouts falling in that window say nothing about the
  components. Shorter pauses (a leader failover takes about a second; liveness rows are at most
  LIVENESS_EVERY seconds old) are not gaps.
- Known limit: a whole-service outage that starts and ends while the scheduler alone is down
  (after the API recorded events past `stopped`) is not detected; its timeouts are emitted
  with their exact expiry. In the log it looks like the whole cluster falling silent while
  the API kept running, which must time every component out at its exact expiry.
- An empty log (nothing known, nothing to judge) records no gap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from domain.events import MONITOR_STREAM, MonitorResumed
from domain.state import Configuration
from eventstore.store import ConcurrencyError, EventStore, NewEvent, RecordedEvent
from scheduler.tables import scheduler_liveness

LIVENESS_EVERY = timedelta(seconds=5)
STOP_WINDOW = 2 * LIVENESS_EVERY
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


def _last_resumed(store: EventStore, monitor_version: int) -> datetime | None:
    """When the last recorded gap ended: a gap already recorded (by another scheduler, or by
    an API process at start-up) is not recorded again."""
    if not monitor_version:
        return None
    last = store.last_event(MONITOR_STREAM)  # it may be archived (eventstore/tables.py)
    return getattr(last.event, "resumed_at", None) if last is not None else None


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
    watched_until = max(known) if known else store.head_recorded_at()
    if watched_until is None or now - watched_until <= threshold:
        return None
    stopped = (
        store.newest_recorded_at(after=watched_until, until=watched_until + STOP_WINDOW)
        or watched_until
    )
    if now - stopped <= threshold:
        return None
    api_back = store.first_recorded_after(stopped)
    if api_back is not None and api_back - stopped <= threshold:
        return None
    event = MonitorResumed(down_since=stopped, resumed_at=now, detector=detector)
    try:
        result = store.append([NewEvent(event)], expected_version=monitor_version)
    except ConcurrencyError:  # another scheduler recorded this gap a moment ago
        return None
    return result.recorded[0]
