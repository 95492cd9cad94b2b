"""Report numbers and renderings from in-memory logs, and the report schedules."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from domain.events import SilenceCreated
from projections.audit import reports
from projections.audit.episodes import EpisodeBuilder
from scheduler.reports_job import cron_trigger, last_period
from tests.unit.projection_helpers import T0, Log


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def _report(log: Log, since: float, until: float) -> dict:
    result = EpisodeBuilder(track_sync=True).feed_all(log.events).finish(at(until))
    data = reports.summarize(result, at(since), at(until))
    # as stored: through JSON
    stored = {"id": 7, "kind": "manual", "position": result.position, "computed_at": at(until)}
    return orjson.loads(orjson.dumps({**stored, "data": data}))


def _history() -> Log:
    log = Log()
    log.heartbeat("a")
    log.heartbeat("<b>")
    log.advance(minutes=10)
    log.timed_out("a", "service", at(5))
    log.heartbeat("<b>")
    log.advance(minutes=10)
    log.recovered("a", "service", at(5))
    log.heartbeat("a")
    log.heartbeat("<b>")
    return log


def test_uptime_mttr_and_longest_outage():
    rows = {c["server"]: c for c in _report(_history(), 0, 24)["data"]["components"]}
    a = rows["a"]
    assert (a["outages"], a["outage_seconds"], a["mttr_seconds"]) == (1, 900, 900)
    assert (a["observed_seconds"], a["uptime_percent"]) == (1440, 37.5)
    assert a["failovers"] == 1
    # "<b>" was silent 10:10-10:20 but no timeout was recorded; it is current at the end
    assert rows["<b>"]["uptime_percent"] == 100.0


def test_an_outage_in_a_maintenance_window_is_counted_and_marked():
    log = _history()
    # a's outage (10:05-10:20) overlaps a silence of a; <b> has none.
    log.record(SilenceCreated(id="s1", starts_at=at(0), ends_at=at(8), servers=["a"]))
    report = _report(log, 0, 24)
    rows = {c["server"]: c for c in report["data"]["components"]}
    assert (rows["a"]["outages"], rows["a"]["outages_during_maintenance"]) == (1, 1)
    assert rows["<b>"]["outages_during_maintenance"] == 0
    assert "1 during maintenance" in reports.to_html(report)
    unsilenced = _report(_history(), 0, 24)
    assert unsilenced["data"]["components"][0]["outages_during_maintenance"] == 0


def test_a_component_removed_before_the_period_and_not_back_is_left_out():
    log = Log()
    log.heartbeat("a")
    log.heartbeat("b")
    log.remove("b")
    log.advance(minutes=1)
    log.heartbeat("a")
    data = _report(log, 1, 2)["data"]
    assert [c["server"] for c in data["components"]] == ["a"]


def test_csv_has_a_row_per_component_and_one_for_the_cluster():
    rows = list(csv.DictReader(io.StringIO(reports.to_csv(_report(_history(), 0, 24)))))
    assert [(r["scope"], r["server"]) for r in rows] == [
        ("component", "<b>"),
        ("component", "a"),
        ("cluster", ""),
    ]
    a = rows[1]
    assert (a["uptime_percent"], a["outage_seconds"], a["failovers"]) == ("37.5", "900.0", "1")
    assert rows[-1]["failovers"] == "1"


def test_html_is_self_contained_with_an_svg_timeline_and_escaped_names():
    page = reports.to_html(_report(_history(), 0, 24))
    assert page.startswith("<!doctype html>")
    assert "<svg" in page and "</svg>" in page
    assert "&lt;b&gt;" in page and "<b>" not in page
    for external in ("<script", "<link", "<img", "src=", "href="):
        assert external not in page
    # one red outage bar for a: from 10:05 to 10:20 of a 24-minute chart 720 px wide
    assert page.count('fill="#d9534f"') == 1
    assert '<rect x="340.0" y="21" width="450.00"' in page


@pytest.mark.parametrize(
    ("cron", "now", "period"),
    [
        (
            "0 0 * * *",
            datetime(2026, 11, 27, 9, 30),
            (datetime(2026, 11, 26), datetime(2026, 11, 27)),
        ),
        # crontab Monday = 1 (APScheduler alone would read 1 as Tuesday)
        (
            "0 0 * * 1",
            datetime(2026, 11, 27, 9, 30),
            (datetime(2026, 11, 16), datetime(2026, 11, 23)),
        ),
        ("0 0 * * 0", datetime(2026, 11, 27), (datetime(2026, 11, 15), datetime(2026, 11, 22))),
        (
            "30 6 * * 1-5",
            datetime(2026, 11, 30, 7),
            (datetime(2026, 11, 27, 6, 30), datetime(2026, 11, 30, 6, 30)),
        ),
    ],
)
def test_the_period_of_a_schedule_is_between_its_last_two_fire_times(cron, now, period):
    utc = tuple(p.replace(tzinfo=UTC) for p in period)
    assert last_period(cron, now.replace(tzinfo=UTC)) == utc


def test_a_cron_expression_needs_five_fields():
    with pytest.raises(ValueError, match="5 fields"):
        cron_trigger("0 0 * *")
