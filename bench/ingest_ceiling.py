"""Where single-heartbeat ingest loses its time: the served product beside two diagnostics.

    .venv/bin/python -m bench.ingest_ceiling [--seconds 10] [--rounds 2]

On one scratch PostgreSQL database, with the same wrk load as bench.api (16 connections, one
heartbeat per POST, 1,000 agents), in turns of 2 s:
- `product`: `clustermon serve` (gunicorn, 2 gevent workers on PostgreSQL): GET /healthz and
  the single heartbeats, as in bench.api;
- `no store`: the same app under the same gunicorn settings, its group committer replaced by
  one that acknowledges at once: what the HTTP stack, auth, validation and the answer cost
  without the commit (the ceiling of the served path);
- `grouped`: the same, but with the product's group committer in front of that
  acknowledgement (each group's leader yields once): what grouping, waiting and waking cost;
- `asyncio`: a prototype of the ingest on gunicorn's ASGI worker (2 workers, asyncio): the same
  token check, compiled validation, events and PostgreSQL function
  (`clustermon_append_heartbeats`), with waiting requests as futures of a group commit instead
  of sleeping threads. Diagnostic only: no metrics, no duplicate ids, no recovery decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import api as load
from bench.common import BENCH_URL, libpq, scratch_database

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def stubbed_app():
    """The product app whose commits are acknowledged without touching the store."""
    from api.app import create_app
    from eventstore.group_commit import Receipt

    class Acknowledge:
        def submit(self, beats, client_ids=(), timeout=30.0):
            return Receipt(len(beats), 0, 1)

    app = create_app()
    app.extensions["clustermon_ingest"] = app.wsgi_app.committer = Acknowledge()
    return app


def grouped_stub_app():
    """The product app whose group committer is kept, but whose groups are acknowledged
    without the store: each leader yields once (as a commit's wait would) and returns. What
    grouping, waiting and waking cost a gevent worker, beside `stubbed_app`."""
    import time
    from types import SimpleNamespace

    from api.app import create_app
    from eventstore.group_commit import GroupCommitter
    from eventstore.store import AppendResult

    class Acknowledge:
        def record_heartbeats(self, beats, maybe_duplicates=()):
            time.sleep(0)  # gevent's, in a gevent worker: the leader lets the others queue
            # What the group committer reads of the recorded events: their ids and positions.
            stored = [
                SimpleNamespace(event_id=b.event_id, position=p) for p, b in enumerate(beats, 1)
            ]
            return AppendResult(stored, [])

    app = create_app()
    app.extensions["clustermon_ingest"] = app.wsgi_app.committer = GroupCommitter(Acknowledge())
    return app


def asyncio_app():
    """The ASGI prototype (see the module docstring)."""
    import psycopg

    from api.heartbeats import compiled_load
    from api.tokens import hash_token
    from domain.events import HeartbeatRecorded
    from eventstore.postgres_heartbeats import _PG_APPEND_HEARTBEATS
    from eventstore.store import APPEND_LOCK_KEY, NOTIFY_CHANNEL

    dsn, digest = os.environ["BENCH_DSN"], os.environ["BENCH_TOKEN_HASH"]
    queue: list = []
    state = {"leading": False, "connection": None}

    async def lead():
        if state["connection"] is None:
            state["connection"] = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        while queue:
            group = queue[:]
            queue.clear()
            rows = [row for beats, _ in group for row in beats]
            params = (True, APPEND_LOCK_KEY, NOTIFY_CHANNEL, HeartbeatRecorded.type, 1)
            params += (orjson.dumps(rows).decode(), datetime.now(UTC), [], ["cluster", "monitor"])
            cursor = await state["connection"].execute(_PG_APPEND_HEARTBEATS, (*params, [0, 0]))
            last = max(row[3] for row in await cursor.fetchall())
            for _, future in group:
                future.set_result(last)
        state["leading"] = False

    async def answer(send, status, body):
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/healthz":
            return await answer(send, 200, b'{"status":"ok"}')
        token = dict(scope["headers"]).get(b"authorization", b"").decode().partition(" ")[2]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        items = compiled_load(orjson.loads(body))
        if hash_token(token) != digest or items is None:
            return await answer(send, 400, b"{}")
        metadata = orjson.dumps({"actor": "bench", "role": "agent"}).decode()
        rows = []
        for item in items:
            item.pop("event_id", None)
            item["ip"] = str(item["ip"]) if item.get("ip") is not None else None
            event = HeartbeatRecorded(**item)
            data = orjson.dumps(event).decode()
            rows.append((str(uuid.uuid4()), event.stream, data, metadata, item["sent_at"], None))
        future = asyncio.get_running_loop().create_future()
        queue.append((rows, future))
        if not state["leading"]:
            state["leading"] = True
            asyncio.get_running_loop().create_task(lead())
        last = await future
        await answer(send, 202, orjson.dumps({"accepted": len(rows), "last_position": last}))

    return app


@contextlib.contextmanager
def gunicorn(target: str, port: int, env: dict, *options: str):
    bind = ["-b", f"127.0.0.1:{port}", "-w", "2", "--reuse-port"]
    process = subprocess.Popen(
        [GUNICORN, *bind, *options, target],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load.wait_up(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = 19000 + os.getpid() % 1000
    from api import tokens

    with contextlib.ExitStack() as stack:
        db = stack.enter_context(scratch_database(BENCH_URL))
        metrics = stack.enter_context(tempfile.TemporaryDirectory())
        env = {
            **os.environ,
            "CLUSTERMON_DATABASE_URL": db,
            "PROMETHEUS_MULTIPROC_DIR": metrics,
            "CLUSTERMON_NEW_SERVERS_PER_HOUR": "0",  # every agent is new at once
            "BENCH_DSN": libpq(db),
        }
        product = stack.enter_context(load.serving("product", ROOT, port, {}))
        # The token was made on the product's own scratch database: the others get their own.
        from api.app import create_app
        from api.services import services

        svc = services(create_app({"DATABASE_URL": db}))
        token = tokens.create_token(svc.engine, svc.clock, "bench", "agent")
        env["BENCH_TOKEN_HASH"] = tokens.hash_token(token)
        stub = stack.enter_context(
            gunicorn("bench.ingest_ceiling:stubbed_app()", port + 1, env, "-k", "gevent")
        )
        grouped = stack.enter_context(
            gunicorn("bench.ingest_ceiling:grouped_stub_app()", port + 3, env, "-k", "gevent")
        )
        native = stack.enter_context(
            gunicorn("bench.ingest_ceiling:asyncio_app()", port + 2, env, "-k", "asgi")
        )
        servers = {
            "product": product,
            "no store": load.Server("no store", stub, token, token),
            "grouped": load.Server("grouped", grouped, token, token),
            "asyncio": load.Server("asyncio", native, token, token),
        }
        turns = [("product", "healthz"), *((name, "single") for name in servers)]
        for round_ in range(1, args.rounds + 1):
            runs: dict = {turn: [] for turn in turns}
            for _ in range(max(1, args.seconds // 2)):
                for name, phase in turns:
                    runs[name, phase].append(load.ingest_phases_one(servers[name], phase, 2))
            healthz = statistics.mean(r["rps"] for r in runs["product", "healthz"])
            print(f"round {round_}: product GET /healthz {healthz:8.0f} req/s")
            for (name, phase), parts in runs.items():
                if phase == "single":
                    rate = statistics.mean(r["rps"] for r in parts)
                    bad = sum(r["non2xx"] for r in parts)
                    print(
                        f"  {name:9s} POST 1 heartbeat {rate:8.0f}/s = {rate / healthz:.2f}x"
                        f" product healthz{f'  NON-2XX: {bad}' if bad else ''}"
                    )


if __name__ == "__main__":
    main()
