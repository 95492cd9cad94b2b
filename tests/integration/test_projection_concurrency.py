"""Several runner processes at once (gunicorn workers + scheduler) while events are appended:
every event is applied exactly once, by exactly one of them."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from domain.state import fold
from eventstore import create_engine, open_store
from projections.readmodel.current import current_view
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps

WORKERS = 3


def _run(url: str, ready, stop, results) -> None:
    engine = create_engine(url)
    store = open_store(engine)
    runner = ProjectionRunner(store, batch_size=7)
    applied = 0
    ready.release()
    try:
        while not stop.is_set():
            applied += runner.catch_up()
            time.sleep(0.001)
        # Every append is done: drain until the read side has them all. One more catch_up is
        # not enough, as it returns 0 while another runner holds the lock (a slow machine left
        # 106 of 198 events unapplied that way).
        deadline = time.monotonic() + 60
        applied += runner.catch_up()
        while ps.events_applied(engine) < store.head_position() and time.monotonic() < deadline:
            time.sleep(0.01)
            applied += runner.catch_up()
    finally:
        engine.dispose()
        results.put(applied)


@pytest.mark.slow
def test_concurrent_runners_apply_every_event_exactly_once(store, clock):
    url = store.engine.url.render_as_string(hide_password=False)
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_run, args=(url, ready, stop, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:  # the appends below race running runners, not starting processes
            assert ready.acquire(timeout=60)
        configs = 0
        for i in range(60):
            batch = [
                ps.beat(store, f"s{(i * 3 + j) % 10}", ("web", "service")[j % 2]) for j in range(3)
            ]
            if i % 5 == 0:
                batch.append(ps.configure(stale_timeout_seconds=60 + i))
                configs += 1
            if i % 11 == 0:
                batch.append(ps.remove(f"s{i % 10}", "web"))
            store.append(batch)
            clock.advance(seconds=1)
    finally:
        stop.set()
        applied = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(30)
    total = store.head_position()
    assert sum(applied) == total  # no event applied twice, none lost
    assert ps.events_applied(store.engine) == total
    view = current_view(store.engine, clock())
    assert view["configuration"]["version"] == configs
    assert view == cluster_view(fold(store.iter_all()), clock())
