"""A 202 means committed: kill the server with SIGKILL in the middle of a load and check that
every acknowledged heartbeat is in the log."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

import orjson
import pytest
import sqlalchemy as sa

from eventstore import create_engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _post(url: str, token: str, beat: dict) -> int:
    request = urllib.request.Request(
        url + "/api/v1/heartbeats",
        data=orjson.dumps(beat),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0  # connection died with the server: not acknowledged


def test_every_acknowledged_heartbeat_survives_sigkill(server, pg_database_url):
    server.cli("db", "upgrade")
    token = server.cli("token", "create", "--role", "agent", "--name", "load")
    server.start()

    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not killed.is_set() and i < 2000:
            event_id = str(uuid.uuid4())
            beat = {
                "event_id": event_id,
                "server": f"load{n}",
                "component": "service",
                "sent_at": datetime.now(UTC).isoformat(),
            }
            if _post(server.url, token, beat) == 202:
                with lock:
                    acknowledged.append(event_id)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    # Kill in the middle of the load, once a good number of heartbeats were acknowledged.
    while True:
        with lock:
            if len(acknowledged) >= 300:
                break
        if not any(t.is_alive() for t in threads):
            break
        time.sleep(0.02)
    server.kill()
    killed.set()
    for t in threads:
        t.join()

    assert len(acknowledged) >= 300
    engine = create_engine(pg_database_url)
    with engine.connect() as conn:
        stored = {str(i) for i in conn.execute(sa.text("SELECT event_id FROM events")).scalars()}
    engine.dispose()
    missing = [i for i in acknowledged if i not in stored]
    assert missing == []
