"""A statement held by a lock: another session holds the store's append lock. Heartbeats must
be told to retry within a bounded time (lock_timeout), and flow again once it is released."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest
import sqlalchemy as sa

from eventstore import create_engine
from eventstore.store import APPEND_LOCK_KEY
from tests.faults.conftest import Answer, Clustermon, heartbeat, post_heartbeat, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LOCK_TIMEOUT_SECONDS = 1
# A request queued behind others waits for their lock timeouts too (one group at a time).
ANSWER_WITHIN_SECONDS = 8
AGENTS = 4


def _posts_at_once(url: str, token: str, count: int) -> list[tuple[float, str, Answer]]:
    """`count` heartbeats posted at the same time: (seconds to answer, event_id, answer)."""
    results: list[tuple[float, str, Answer]] = []
    lock = threading.Lock()

    def post(n: int) -> None:
        beat = heartbeat(f"node{n % AGENTS}")
        started = time.monotonic()
        answer = post_heartbeat(url, token, beat, timeout=ANSWER_WITHIN_SECONDS + 10)
        with lock:
            results.append((time.monotonic() - started, beat["event_id"], answer))

    threads = [threading.Thread(target=post, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _stored(database_url: str) -> Counter:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT event_id FROM events")).scalars()
            return Counter(str(i) for i in rows)
    finally:
        engine.dispose()


def test_heartbeats_are_told_to_retry_while_the_append_lock_is_held(
    pg_scratch_url, processes, tmp_path
):
    server = Clustermon(
        pg_scratch_url, tmp_path, CLUSTERMON_DB_LOCK_TIMEOUT_SECONDS=str(LOCK_TIMEOUT_SECONDS)
    )
    processes.append(server)
    token = server.cli("token", "create", "--role", "agent", "--name", "faults")
    server.serve()
    before = _posts_at_once(server.url, token, AGENTS)
    assert [a.status for _, _, a in before] == [202] * AGENTS

    holder = psycopg.connect(pg_scratch_url.replace("+psycopg", ""), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK_KEY,))
        held = _posts_at_once(server.url, token, AGENTS)
    finally:
        holder.close()  # the session ends: its lock goes with it

    assert [str(a) for _, _, a in held if not a.is_retry_later()] == []
    assert max(seconds for seconds, _, _ in held) < ANSWER_WITHIN_SECONDS
    assert "lock" in held[0][2].json()["detail"]

    # No worker stayed stuck behind the lock: every one takes heartbeats again.
    wait_until(
        lambda: post_heartbeat(server.url, token, heartbeat("node0")).status == 202,
        10,
        "a heartbeat acknowledged after the lock was released",
    )
    after = _posts_at_once(server.url, token, 4 * AGENTS)
    assert [str(a) for _, _, a in after if a.status != 202] == []

    stored = _stored(pg_scratch_url)
    assert all(stored[i] == 1 for _, i, _ in before + after)
    assert not any(stored[i] for _, i, _ in held)  # told to retry: nothing of it was written
