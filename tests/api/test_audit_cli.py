"""`clustermon audit`, `what-if` and `report` over the scripted history, on both databases."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from api.services import services
from tests.integration.test_audit_history import script_history

PERIOD = ["--since", "2026-11-27T10:00:00Z", "--until", "2026-11-27T10:45:00Z"]


@pytest.fixture
def runner(app, clock):
    script_history(services(app).store, clock)
    return app.test_cli_runner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_audit_prints_episodes_failovers_and_cluster_outages(runner):
    out = _ok(runner.invoke(args=["audit", *PERIOD]))
    episodes, failovers, outages = out.split("\n\n")[1:4]
    lines = episodes.splitlines()[3:]
    assert [line.split()[0] for line in lines] == ["a/service", "a/service", "b/service"]
    assert "2026-11-27 10:15:00  2026-11-27 10:20:00  5 min " in lines[0]
    assert "sweep-test" in lines[0]
    assert [line.split()[2] for line in failovers.splitlines()[3:]] == ["a", "a"]
    [outage] = outages.splitlines()[3:]
    assert outage.startswith("2026-11-27 10:35:30  2026-11-27 10:40:00  4 min 30 s")


def test_audit_json_and_bad_times(runner):
    body = orjson.loads(_ok(runner.invoke(args=["audit", *PERIOD, "--json"])))
    assert len(body["failovers"]) == 2 and len(body["cluster_outages"]) == 1
    bad = runner.invoke(args=["audit", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "not an ISO-8601 time" in bad.output


def test_what_if_prints_both_sides(runner):
    out = _ok(runner.invoke(args=["what-if", "--stale-timeout", "15min", *PERIOD]))
    summary = out.split("\n\n")[1].splitlines()
    assert summary[2].split()[:2] == ["actual", "3"]
    assert summary[3].split()[:2] == ["what-if", "0"]
    assert "{'stale_timeout_seconds': 900}" in out
    assert out.rstrip().endswith("What-if episodes") is False
    assert out.rstrip().splitlines()[-1] == "(none)"
    shorter = _ok(runner.invoke(args=["what-if", "--stale-timeout", "120s", *PERIOD, "--json"]))
    assert orjson.loads(shorter)["what_if"]["episodes"][0]["start"] == "2026-11-27T10:12:00+00:00"


@pytest.mark.parametrize("value", ["0s", "2 weeks", "-5", "40d"])
def test_what_if_refuses_bad_timeouts(runner, value):
    result = runner.invoke(args=["what-if", "--stale-timeout", value, *PERIOD])
    assert result.exit_code == 2


def test_what_if_needs_a_timeout(runner):
    result = runner.invoke(args=["what-if", *PERIOD])
    assert result.exit_code == 2 and "--stale-timeout" in result.output


def test_report_table_csv_and_save(runner, app):
    out = _ok(runner.invoke(args=["report", *PERIOD]))
    row = next(line for line in out.splitlines() if line.startswith("a/service"))
    assert row.split()[1:5] == ["75.556", "2", "11", "min"]
    assert "2 failover(s), 1 cluster outage(s) totalling 4 min 30 s" in out
    rows = list(
        csv.DictReader(io.StringIO(_ok(runner.invoke(args=["report", *PERIOD, "--format", "csv"]))))
    )
    assert next(r for r in rows if r["server"] == "b")["uptime_percent"] == "90.0"
    saved = runner.invoke(args=["report", *PERIOD, "--format", "json", "--save"])
    assert saved.exit_code == 0
    from projections.audit import report_store

    [stored] = report_store.listing(services(app).engine)
    assert stored["requested_by"] == "cli"
