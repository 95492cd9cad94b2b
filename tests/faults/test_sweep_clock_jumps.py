"""The scheduler's clock jumping back and forth around a heartbeat's expiry (NTP steps, a VM
resumed, a scheduler host with a wrong clock taking over): the sweep must record each outage
exactly once, stamped with its logical expiry, never twice and never not at all.

The sweep is driven through its function with the app's injected clock (the store stamps with
the same clock), on SQLite and PostgreSQL, by a long-lived index (a running scheduler) and by a
fresh one at every step (a scheduler that just took over)."""

from __future__ import annotations

from datetime import timedelta

from domain.events import HeartbeatRecorded
from eventstore import NewEvent
from eventstore.commands import ClusterCommands
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts

TIMEOUT = timedelta(seconds=300)  # the default stale timeout of a service component
US = timedelta(microseconds=1)


def beat(store, server="app01"):
    event = HeartbeatRecorded(server, "service", sent_at=store.clock())
    return ClusterCommands(store).record_heartbeats([NewEvent(event)]).recorded[-1]


def expiries(store) -> list:
    log = store.read_all(limit=None)
    return [r.event.expired_at for r in log if r.type == "ComponentTimedOut"]


def sweep_at(store, clock, index, when) -> None:
    """Both sweepers look at `when` (the clock set there: appends stamp with it)."""
    clock.now = when
    emit_timeouts(store, when, index=index, detector="running")
    emit_timeouts(store, when, detector="taking-over")


def test_a_clock_jumping_around_an_expiry_records_it_exactly_once(store, clock):
    start = clock.now
    first = beat(store)
    expiry = first.recorded_at + TIMEOUT
    index = DeadlineIndex()

    for when in (expiry - US, expiry, start, expiry - US):  # up to the expiry and back
        sweep_at(store, clock, index, when)
    assert expiries(store) == []  # current while now <= deadline
    sweep_at(store, clock, index, expiry + US)
    assert expiries(store) == [expiry]  # just after it: recorded once, at the logical expiry

    # Back before the expiry, forward past it, far back, far forward: nothing more.
    for when in (expiry - 10 * US, expiry + US, start - TIMEOUT, expiry + 10 * TIMEOUT):
        sweep_at(store, clock, index, when)
    assert expiries(store) == [expiry]

    # A heartbeat while the clock is behind (before the recorded timeout): a recovery, stamped
    # no earlier than the log's last event, and a fresh deadline from that stamp.
    clock.now = expiry - TIMEOUT / 2
    second = beat(store)
    types = [r.type for r in store.read_stream("app01/service")]
    assert types == [
        "HeartbeatRecorded",
        "ComponentTimedOut",
        "ComponentRecovered",
        "HeartbeatRecorded",
    ]
    next_expiry = second.recorded_at + TIMEOUT
    for when in (next_expiry - US, next_expiry, expiry + US, start, next_expiry - TIMEOUT):
        sweep_at(store, clock, index, when)
    assert expiries(store) == [expiry]  # current until its new deadline, whatever the jumps
    for when in (next_expiry + US, next_expiry - US, next_expiry + 2 * US, start):
        sweep_at(store, clock, index, when)
    assert expiries(store) == [expiry, next_expiry]


def test_a_late_heartbeat_that_recorded_the_timeout_itself_is_not_swept_again(store, clock):
    """The clock jumps far ahead and a heartbeat arrives before any sweep: the ingest records
    the outage (stamped with its logical expiry) and the recovery. When the scheduler's clock
    then jumps back to just after that expiry, it must not record the same outage again."""
    first = beat(store)
    expiry = first.recorded_at + TIMEOUT
    index = DeadlineIndex()
    sweep_at(store, clock, index, expiry - US)  # the running sweeper indexed the deadline

    clock.now = expiry + 10 * TIMEOUT
    beat(store)
    assert expiries(store) == [expiry]
    for when in (expiry + US, expiry + 2 * TIMEOUT, expiry - US, expiry + 10 * TIMEOUT):
        sweep_at(store, clock, index, when)
    assert expiries(store) == [expiry]
