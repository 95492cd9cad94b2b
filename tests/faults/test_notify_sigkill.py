"""The leading scheduler SIGKILLed between sending a message and recording it: once its lease
has run out the message is sent again, with the same id, and nothing else is repeated or lost.

The webhook holds its answer to the first POST until the test has killed the scheduler, so the
kill lands exactly between the send and the row update."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from cli.processes import spawn_scheduler
from notify.sender import LEASE, Sender
from tests.faults.conftest import wait_until
from tests.notify_support import KEY, add_delivery, configure, row_of, webhook

pytestmark = pytest.mark.slow


def test_a_sigkill_between_send_and_record_repeats_one_message_with_its_id(
    database_url, engine, store, clock, tmp_path
):
    def now() -> datetime:
        return datetime.now(UTC)

    with webhook() as hook:
        hook.release = threading.Event()
        configure(store, hook.url)
        ids = [add_delivery(engine, now, server=f"web{i}") for i in range(3)]

        log_path = tmp_path / "scheduler.log"
        with log_path.open("wb") as log:
            scheduler = spawn_scheduler(
                database_url, env={"CLUSTERMON_SECRET_KEY": KEY}, stderr=log, stdout=log
            )
        try:
            if not hook.got_one.wait(30):
                raise AssertionError(f"no delivery within 30 s:\n{log_path.read_text()}")
            os.kill(scheduler.pid, signal.SIGKILL)
            scheduler.wait(timeout=10)
        finally:
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait(timeout=10)
        hook.release.set()  # its answer now goes to a dead connection

        first = hook.ids()[0]
        assert first == ids[0]
        assert row_of(engine, first).state == "pending"  # sent, but never recorded
        # Nobody else may send it while the dead scheduler's lease holds.
        assert Sender(engine, KEY, now).send_due() == 0

        # The lease has run out (a pinned clock past it): the next sender takes over.
        later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
        assert Sender(engine, KEY, lambda: later).send_due() == 3
        wait_until(lambda: len(hook.received) == 4, 5, "the repeat and the two others")

    received = Counter(hook.ids())
    assert received == {ids[0]: 2, ids[1]: 1, ids[2]: 1}  # one repeat, with the same id
    assert [r.headers["Idempotency-Key"] for r in hook.received[:2]] == [ids[0], ids[0]]
    assert {row_of(engine, i).state for i in ids} == {"sent"}
