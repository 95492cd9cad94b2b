"""Availability strips at 1,000 servers: the endpoint's latency on SQLite and PostgreSQL, and
the page's render time in Chromium.

    .venv/bin/python -m bench.availability [--servers 1000] [--hours 26] [--period 300]
        [--requests 30] [--databases sqlite,postgres] [--browser]

The log: `--servers` servers x {web, service} beating every `--period` seconds for `--hours`
(written with the rows the store writes: COPY on PostgreSQL, executemany on SQLite); each
server's service goes silent once for 2-20 minutes at a random time with a 1-in-20 chance (a
recorded timeout, a recovery), two servers' services are removed by hand, one of them comes
back an hour later, and the monitor is down for 10 minutes once (`MonitorResumed`). The read
model is rebuilt and a snapshot written every hour of log, as a running scheduler would.

Timed, per database, through the Flask test client with a viewer token (whole answer, all
servers in one page: `limit=1000`), with the app's clock moved past REUSE_SECONDS per request so
that no request reuses the previous answer: p50 and p99 of `--requests` requests for `window=24h`
(seeded from the snapshot before the window) and `window=7d` (longer than the log: from its
start), plus the first request (cold caches) and a request answered from the kept answer.
`--period 30` (the product default) writes 10x the heartbeats: the pass reads none of the
heartbeats in between, so the latency should barely move.

`--browser` (SQLite): serves the app on 127.0.0.1, signs in with Chromium and reads the
`availability-render` measure (performance.now() around the render) for the default view
(the 20 worst rows) and for "Show all" (every row), median of 5 each; a screenshot goes to
/tmp/availability.png.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

import migrations
from api.availability import REUSE_SECONDS
from api.tokens import create_token
from bench.common import BENCH_URL, libpq, scratch_database
from bench.report import COLUMNS, Writer, _beat
from cli.main import create_app
from domain.events import ComponentRecovered, ComponentRemoved, ComponentTimedOut, MonitorResumed
from eventstore import create_engine, open_store
from eventstore.tables import events as events_table
from projections.readmodel.rebuild import rebuild
from projections.readmodel.snapshots import take_snapshot

T0 = datetime(2026, 10, 1, tzinfo=UTC)
TIMEOUT = timedelta(seconds=300)


class Rows:
    """What Writer writes to (`write_row`), inserted in batches through the store's table (its
    types write SQLite's UUIDs and times as the store does)."""

    NAMES = [name.strip() for name in COLUMNS.split(",")]

    def __init__(self, conn: sa.Connection):
        self.conn, self.rows = conn, []

    def write_row(self, row: tuple) -> None:
        self.rows.append(dict(zip(self.NAMES, row, strict=True)))
        if len(self.rows) >= 20_000:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.conn.execute(events_table.insert(), self.rows)
        self.rows = []


def history(out: Writer, servers: int, hours: int, period: int) -> datetime:
    """Write the log (see the module docstring); returns the time of its last heartbeats."""
    rng = random.Random(20)
    step = timedelta(seconds=period)
    steps = int(timedelta(hours=hours) / step)
    names = [f"srv-{i:04d}" for i in range(servers)]
    silences = {
        name: (rng.randrange(1, steps), rng.randrange(120, 1200) // period + 1)
        for name in names
        if rng.random() < 0.05
    }
    removed = {names[7]: (steps // 3, steps // 3 + 3600 // period), names[11]: (steps // 2, steps)}
    gap = (steps * 2 // 3, 600 // period)
    last: dict[str, datetime] = {}
    timed_out: dict[str, datetime] = {}
    for n in range(steps):
        at = T0 + n * step
        if n == gap[0]:
            resumed = at + gap[1] * step
            out.write(MonitorResumed(down_since=at, resumed_at=resumed, detector="bench"), resumed)
        if gap[0] <= n < gap[0] + gap[1]:
            continue
        for name in names:
            out.write(_beat(name, "web", at, "2025.10"), at)
            if name in removed and removed[name][0] <= n < removed[name][1]:
                if n == removed[name][0]:
                    out.write(ComponentRemoved(server=name, component="service"), at)
                continue
            start, length = silences.get(name, (-1, 0))
            if start <= n < start + length:
                expiry = last[name] + TIMEOUT
                if name not in timed_out and at > expiry:
                    out.write(
                        ComponentTimedOut(
                            server=name,
                            component="service",
                            expired_at=expiry,
                            detected_at=at,
                            timeout_seconds=300,
                            configuration_version=0,
                            last_heartbeat_position=None,
                            detector="bench",
                        ),
                        at,
                    )
                    timed_out[name] = expiry
                continue
            if name in timed_out:
                since = timed_out.pop(name)
                out.write(
                    ComponentRecovered(
                        server=name,
                        component="service",
                        stale_since=since,
                        recovered_at=at,
                        outage_seconds=(at - since).total_seconds(),
                    ),
                    at,
                )
            out.write(_beat(name, "service", at, "2025.10"), at)
            last[name] = at
    return T0 + (steps - 1) * step  # the last heartbeats


def generate(url: str, args) -> tuple[int, datetime]:
    if url.startswith("sqlite"):
        engine = create_engine(url)
        with engine.begin() as conn:
            rows = Rows(conn)
            out = Writer(rows)
            end = history(out, args.servers, args.hours, args.period)
            rows.flush()
            conn.exec_driver_sql("ANALYZE")
        engine.dispose()
        return out.count, end
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
            out = Writer(copy)
            end = history(out, args.servers, args.hours, args.period)
        conn.commit()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    return out.count, end


def prepare(url: str, end: datetime, events: int, hours: int) -> None:
    """The read model and hourly snapshots, as a running scheduler leaves them."""
    store = open_store(create_engine(url), lambda: end)
    rebuild(store)
    take_snapshot(store, every_events=max(1, events // hours), every_seconds=None)
    store.engine.dispose()


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(url: str, end: datetime, requests: int) -> dict[str, float]:
    start = end + timedelta(seconds=10)
    clock = Clock(start)
    app = create_app({"DATABASE_URL": url, "CLOCK": clock, "TESTING": True})
    engine = create_engine(url)
    token = create_token(engine, clock, "bench-viewer", "viewer")
    engine.dispose()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    cpu: list[float] = []

    def get(window: str) -> tuple[float, dict]:
        started, used = time.perf_counter(), time.process_time()
        response = client.get(f"/api/v1/availability?window={window}&limit=1000", headers=headers)
        seconds = time.perf_counter() - started
        cpu.append(time.process_time() - used)
        assert response.status_code == 200, response.get_data(as_text=True)
        return seconds, response.get_json()

    figures: dict[str, float] = {}
    figures["cold 24h"], body = get("24h")
    figures["cached 24h"], _ = get("24h")
    for window in ("24h", "7d"):
        samples = []
        cpu.clear()
        for n in range(requests):
            # Past the kept answer's REUSE_SECONDS (and back): every request computes, and the
            # services, beating every `--period`, do not all turn stale meanwhile.
            clock.now = start + timedelta(seconds=(REUSE_SECONDS + 1) * (n % 2))
            seconds, body = get(window)
            samples.append(seconds)
        figures[f"{window} p50"] = statistics.median(samples)
        figures[f"{window} p99"] = percentile(samples, 99)
        figures[f"{window} CPU p50"] = statistics.median(cpu)
        figures[f"{window} components"] = len(body["components"])
        figures[f"{window} segments"] = sum(len(c["segments"]) for c in body["components"])
    figures["answer KiB"] = (
        len(client.get("/api/v1/availability?limit=1000", headers=headers).data) / 1024
    )
    return figures


def browser(url: str, end: datetime) -> dict[str, float]:
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    from tests.e2e.browser import launch

    clock = Clock(end + timedelta(seconds=10))
    app = create_app({"DATABASE_URL": url, "CLOCK": clock})
    engine = create_engine(url)
    token = create_token(engine, clock, "bench-browser", "viewer")
    engine.dispose()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    figures: dict[str, float] = {}
    try:
        with sync_playwright() as playwright:
            chromium = launch(playwright)
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.get_by_label("API token").fill(token)
            page.locator("#sign-in-form").get_by_role("button", name="Sign in").click()
            expect(page.locator(".av-row")).to_have_count(20, timeout=120_000)
            more = page.locator("#availability-more")
            runs: dict[str, list[float]] = {"20 worst rows": [], "every row": []}
            for _ in range(5):
                for name in ("every row", "20 worst rows"):
                    before = page.evaluate(_COUNT)
                    more.click()
                    page.wait_for_function(f"({_COUNT}) > {before}")
                    runs[name].append(page.evaluate(_LAST))
            rows = page.locator(".av-row").count()
            more.click()
            page.wait_for_function(f"document.querySelectorAll('.av-row').length > {rows}")
            page.screenshot(path="/tmp/availability.png", full_page=False)
            figures["rows drawn (all)"] = page.locator(".av-row").count()
            chromium.close()
    finally:
        server.shutdown()
    for name, samples in runs.items():
        figures[f"render {name} ms, median"] = statistics.median(samples)
        figures[f"render {name} ms, max"] = max(samples)
    return figures


_COUNT = "performance.getEntriesByName('availability-render').length"
_LAST = "performance.getEntriesByName('availability-render').at(-1).duration"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=26)
    parser.add_argument("--period", type=int, default=300)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            with _database(kind, folder) as url:
                started = time.perf_counter()
                count, end = generate(url, args)
                prepare(url, end, count, args.hours)
                took = time.perf_counter() - started
                print(
                    f"{kind}: {count:,} events ({args.servers} servers x 2, every"
                    f" {args.period} s, {args.hours} h) written and prepared in {took:.0f} s",
                    file=sys.stderr,
                )
                results[kind] = measure(url, end, args.requests)
                if args.browser and kind == "sqlite":
                    results["chromium"] = browser(url, end)
    for kind, figures in results.items():
        print(f"\n{kind}:")
        for name, value in figures.items():
            unit = (
                ""
                if "ms" in name
                or "KiB" in name
                or "components" in name
                or "segments" in name
                or "rows" in name
                else " ms"
            )
            shown = value * 1000 if unit else value
            print(f"  {name:<32} {shown:10.1f}{unit}")


class _database:
    def __init__(self, kind: str, folder: str):
        self.kind, self.folder = kind, folder

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            path = Path(self.folder) / "bench.db"
            url = f"sqlite:///{path}"
            migrations.upgrade(url)
            return url
        self._scratch = scratch_database(BENCH_URL)
        return self._scratch.__enter__()

    def __exit__(self, *exc) -> None:
        if self.kind != "sqlite":
            self._scratch.__exit__(*exc)


if __name__ == "__main__":
    main()
