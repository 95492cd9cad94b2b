"""The Sender on both databases: delivery rows inserted directly, channels configured through
ClusterCommands with a sealed URL, real webhook receivers on 127.0.0.1 and a pinned clock."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from notify.sender import Sender, backoff
from notify.tables import deliveries
from tests.notify_support import KEY, add_delivery, configure, free_port, remove, row_of, webhook

SECRET_PATH = "clustermon-s3cr3t-path"


def sender(engine, clock, **options) -> Sender:
    options.setdefault("random", lambda: 0.5)
    return Sender(engine, KEY, clock, **options)


def test_a_due_delivery_is_sent_with_its_id_and_recorded_as_sent(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        delivery_id = add_delivery(engine, clock)

        assert sender(engine, clock).send_due() == 1

    [got] = hook.received
    assert got.body["id"] == delivery_id
    assert got.headers["Idempotency-Key"] == delivery_id
    assert got.body["reasons"] == ["no heartbeat for 300 s"]
    row = row_of(engine, delivery_id)
    assert (row.state, row.attempts, row.sent_at, row.claimed_until) == ("sent", 1, clock(), None)
    assert sender(engine, clock).send_due() == 0  # sent once, never again


def test_a_receiver_that_was_down_gets_the_message_once_it_is_back(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        delivery_id = add_delivery(engine, clock)
        hook.status = 503
        send = sender(engine, clock)

        assert send.send_due() == 0
        row = row_of(engine, delivery_id)
        assert (row.state, row.attempts) == ("pending", 1)
        assert "503" in row.last_error
        assert row.next_attempt_at == clock() + timedelta(seconds=15)  # 30 s * 2^0 * 0.5

        hook.status = 200
        clock.advance(seconds=14)
        assert send.send_due() == 0  # its backoff has not passed: it waits
        assert len(hook.received) == 1

        clock.advance(seconds=1)
        assert send.send_due() == 1

    assert hook.ids() == [delivery_id, delivery_id]
    row = row_of(engine, delivery_id)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 2, clock())


def test_a_delivery_fails_after_max_attempts_with_the_last_error(engine, store, clock, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/hooks/{SECRET_PATH}"  # nobody listens
    configure(store, url)
    delivery_id = add_delivery(engine, clock)
    send = sender(engine, clock, max_attempts=4, random=lambda: 1.0)

    waits = []
    for _ in range(4):
        send.send_due()
        row = row_of(engine, delivery_id)
        if row.state == "pending":
            waits.append(row.next_attempt_at - clock())
            clock.now = row.next_attempt_at

    row = row_of(engine, delivery_id)
    assert (row.state, row.attempts) == ("failed", 4)
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120)]  # exponential
    assert "could not be reached" in row.last_error
    assert SECRET_PATH not in row.last_error
    assert SECRET_PATH not in caplog.text
    assert "failed: the webhook could not be reached" in caplog.text
    clock.advance(hours=2)
    assert send.send_due() == 0  # failed is final


def test_backoff_is_capped_at_an_hour_and_jittered():
    assert backoff(1, lambda: 1.0) == timedelta(seconds=30)
    assert backoff(4, lambda: 1.0) == timedelta(seconds=240)
    assert backoff(20, lambda: 1.0) == timedelta(hours=1)
    assert backoff(20, lambda: 0.25) == timedelta(minutes=15)


def test_a_delivery_to_a_removed_channel_fails(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        delivery_id = add_delivery(engine, clock)
        remove(store, "ops")

        assert sender(engine, clock).send_due() == 0

    assert hook.received == []
    row = row_of(engine, delivery_id)
    assert (row.state, row.last_error) == ("failed", "channel removed")


def test_a_changed_channel_gets_the_message_at_its_new_url(engine, store, clock):
    with webhook() as old, webhook() as new:
        configure(store, old.url)
        delivery_id = add_delivery(engine, clock)
        configure(store, new.url)

        assert sender(engine, clock).send_due() == 1

    assert (old.ids(), new.ids()) == ([], [delivery_id])


def test_a_channel_sealed_with_another_key_is_retried_with_a_reason(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        delivery_id = add_delivery(engine, clock)

        assert Sender(engine, "another-key", clock).send_due() == 0

    row = row_of(engine, delivery_id)
    assert row.state == "pending"
    assert "CLUSTERMON_SECRET_KEY" in row.last_error


def test_a_grace_period_and_another_senders_lease_are_waited_for(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        later = add_delivery(engine, clock, next_attempt_at=clock() + timedelta(seconds=30))
        leased = add_delivery(engine, clock, claimed_until=clock() + timedelta(seconds=60))
        expired = add_delivery(engine, clock, claimed_until=clock() - timedelta(seconds=1))
        send = sender(engine, clock)

        assert send.send_due() == 1
        assert hook.ids() == [expired]

        clock.advance(seconds=61)
        assert send.send_due() == 2

    assert sorted(hook.ids()[1:]) == sorted([later, leased])


def test_two_senders_at_once_send_each_message_once(engine, store, clock):
    with webhook() as hook:
        configure(store, hook.url)
        ids = {add_delivery(engine, clock, server=f"web{i:02}") for i in range(40)}
        senders = [sender(engine, clock), sender(engine, clock)]

        def drain(s: Sender) -> None:
            while s.send_due(limit=5):  # 0: nothing left it could claim
                pass

        threads = [threading.Thread(target=drain, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    assert sorted(hook.ids()) == sorted(ids)  # each once, none twice
    with engine.connect() as conn:
        states = conn.execute(sa.select(deliveries.c.state).distinct()).scalars().all()
    assert states == ["sent"]


def test_rows_whose_lease_would_run_out_before_their_turn_are_given_back(engine, store, clock):
    class Ticking:
        """20 s pass at every reading: the batch's 60 s lease runs short after one message."""

        def __call__(self):
            return clock.advance(seconds=20)

    with webhook() as hook:
        configure(store, hook.url)
        ids = [add_delivery(engine, clock) for _ in range(3)]

        assert sender(engine, Ticking()).send_due() == 1

    assert hook.ids() == ids[:1]
    rest = [row_of(engine, i) for i in ids[1:]]
    assert [(r.state, r.claimed_until, r.attempts) for r in rest] == [("pending", None, 0)] * 2


@pytest.mark.parametrize("limit", [1, 3])
def test_send_due_takes_at_most_limit_rows_oldest_first(engine, store, clock, limit):
    with webhook() as hook:
        configure(store, hook.url)
        ids = [add_delivery(engine, clock) for _ in range(4)]

        assert sender(engine, clock).send_due(limit=limit) == limit

    assert hook.ids() == ids[:limit]
