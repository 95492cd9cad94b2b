"""PostgreSQL restarted during ingest: a proxy between `clustermon serve` and PostgreSQL closes
every connection and refuses new ones for a few seconds, while agents keep posting."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa

from eventstore import create_engine
from tests.faults.conftest import Answer, Clustermon, heartbeat, post_heartbeat, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AGENTS = 4
CUT_SECONDS = 3
RECOVERY_SECONDS = 15  # ingest must take heartbeats again this soon after the database returns


def stored_ids(database_url: str) -> Counter:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT event_id FROM events WHERE type = 'HeartbeatRecorded'")
            return Counter(str(i) for i in conn.execute(query).scalars())
    finally:
        engine.dispose()


def test_heartbeats_are_acknowledged_or_told_to_retry_while_postgresql_restarts(
    pg_scratch_url, proxy, processes, tmp_path
):
    proxy.restore()
    server = Clustermon(proxy.url_for(pg_scratch_url), tmp_path)
    processes.append(server)
    token = server.cli("token", "create", "--role", "agent", "--name", "faults")
    server.serve()

    answers: list[tuple[float, str, Answer]] = []  # (sent at, event_id, answer)
    lock = threading.Lock()
    stop = threading.Event()

    def agent(n: int) -> None:
        while not stop.is_set():
            event_id, sent_at = str(uuid.uuid4()), time.monotonic()
            answer = post_heartbeat(server.url, token, heartbeat(f"node{n}", event_id))
            with lock:
                answers.append((sent_at, event_id, answer))
            if answer.status != 202:
                time.sleep(0.05)  # an agent told to retry does not spin

    def count(after: float, status: int) -> int:
        with lock:
            return sum(1 for t, _, a in answers if t >= after and a.status == status)

    agents = [threading.Thread(target=agent, args=(n,), daemon=True) for n in range(AGENTS)]
    for thread in agents:
        thread.start()
    try:
        wait_until(lambda: count(0, 202) >= 50, 30, "50 heartbeats acknowledged before the cut")

        proxy.cut()
        cut_at = time.monotonic()
        ready_while_cut = wait_until(
            lambda: (a := server.get("/readyz")).status != 200 and a,
            CUT_SECONDS,
            "/readyz failing while the database is cut off",
        )
        wait_until(lambda: count(cut_at, 0) + count(cut_at, 503) + count(cut_at, 500), 10, "")
        time.sleep(max(0.0, cut_at + CUT_SECONDS - time.monotonic()))  # the outage lasts

        proxy.restore()
        restored_at = time.monotonic()
        wait_until(
            lambda: count(restored_at, 202),
            RECOVERY_SECONDS,
            "a heartbeat acknowledged after PostgreSQL came back (without restarting clustermon)",
        )
        time.sleep(0.5)  # a little traffic after the recovery too
    finally:
        stop.set()
        for thread in agents:
            thread.join(timeout=30)

    assert ready_while_cut.status == 503, ready_while_cut
    wrong = [str(a) for _, _, a in answers if a.status != 202 and not _retry_later(a)]
    assert wrong == [], f"{len(wrong)} of {len(answers)} answers neither 202 nor 503 problem+json"
    told_to_retry = [a for t, _, a in answers if a.status == 503]
    assert told_to_retry, "no heartbeat met the outage: the cut came too late"
    acknowledged = [event_id for _, event_id, a in answers if a.status == 202]
    stored = stored_ids(pg_scratch_url)
    assert [i for i in acknowledged if stored[i] != 1] == []  # each exactly once


def _retry_later(answer: Answer) -> bool:
    try:
        return answer.is_retry_later()
    except ValueError:  # not JSON
        return False
