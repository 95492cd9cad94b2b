"""Schemathesis, every phase and every check, against a live server: the contract
(/openapi.json) tells the whole truth.

The run is what `schemathesis run` does (probing, examples, coverage, fuzzing, stateful), driven
through its engine so that it runs under pytest in CI. It talks HTTP to the app served by
werkzeug in a thread of this process: real requests, and a live stream the test can bound
(`SSE_MAX_SECONDS`). The agent token posts heartbeats, the admin token does everything else.

Rules no JSON Schema can state because they depend on the clock, on what is stored or on two
fields at once (`?at=` in the future or before the log, a report whose period has not ended,
the stale timeout >= 2 heartbeat periods with the settings in force, a target's timeout below
its interval, an Apprise URL's parts, a silence ending in the past) are in the document as
descriptions and declared answers; `DYNAMIC_RULES` tells schemathesis which answers those
operations may give to a schema-valid request. Every other rule is in the schema itself.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.e2e.live_app import LiveApp, serve

# Per operation and phase: ~2,200 cases, ~40 s of CPU (1.5-3 min on 2 shared, busy cores).
MAX_EXAMPLES = 25
SEED = 20  # reproducible in CI; change it by hand to explore

# Schema-valid requests that an operation may still refuse, and why (each is in the document).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
DYNAMIC_RULES = {
    # ?at= in the future (422) or before the log (422, 410 once archived); ?position= beyond
    # the head (422) or archived (410); `at` and `position` together (422).
    ("GET", "/api/v1/cluster"): ["410", "422"],
    # stale timeout >= 2 heartbeat periods, with the settings in force (422)
    ("PUT", "/api/v1/cluster/configuration"): ["422"],
    # a report covers a period that has ended: `until` in the future (422)
    ("POST", "/api/v1/reports"): ["422"],
    # `at` of an explanation before the component was ever seen (404 covers it) or archived
    ("GET", "/api/v1/servers/{server}/components/{component}/explain"): ["410"],
    # a new target needs `url`; the timeout stays below the interval, with the settings in
    # force; a URL JSON Schema's `uri` allows but no poller can use (no host name)
    ("PUT", "/api/v1/targets/{server}"): ["422"],
    # an URL that no sender knows (Apprise's schemes and what each needs)
    ("PUT", "/api/v1/notifications/channels/{name}"): ["422"],
    # a silence that would end before it starts, or in the past
    ("POST", "/api/v1/silences"): ["422"],
}
# Not run: it sends a real message to whatever URL the fuzzer gave the channel (its 502 is the
# channel's own error, documented); tests/api/test_notifications.py tests it against local
# servers.
EXCLUDED = ["POST /api/v1/notifications/channels/{name}/test"]


@pytest.fixture(scope="module")
def live(tmp_path_factory, sqlite_template) -> Iterator[LiveApp]:
    with serve(sqlite_template, tmp_path_factory.mktemp("contract")) as app:
        yield app


def config_for(url: str, tokens: dict[str, str]) -> SchemathesisConfig:
    operations: list[dict] = [
        {
            "include-name": "POST /api/v1/heartbeats",
            "headers": {"Authorization": f"Bearer {tokens['agent']}"},
        }
    ]
    for (method, path), statuses in DYNAMIC_RULES.items():
        operations.append(
            {
                "include-name": f"{method} {path}",  # one filter: several would be OR'ed
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + statuses}},
            }
        )
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": url,
            "headers": {"Authorization": f"Bearer {tokens['admin']}"},
            "generation": {"max-examples": MAX_EXAMPLES},
            "request-timeout": 10,
            "cache": {"enabled": False},
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            "operations": operations,
        }
    )


def run(url: str, config: SchemathesisConfig) -> dict:
    """Every phase of `schemathesis run`; what each phase did and every distinct failure."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    schema = schema.exclude(name=EXCLUDED)
    cases: collections.Counter = collections.Counter()
    seconds: collections.Counter = collections.Counter()
    failures: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    phases: dict[str, str] = {}
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases[event.phase.value] += len(event.recorder.cases)
            seconds[event.recorder.label] += event.elapsed_time
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        info = check.failure_info
                        key = (event.recorder.label, check.name)
                        failures.setdefault(
                            key,
                            f"{info.failure.title}: {info.failure.message[:600]}\n"
                            f"    {info.code_sample[:600]}",
                        )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}"[:600])
        elif isinstance(event, events.PhaseFinished):
            phases[event.phase.name.value] = event.status.value
    return {
        "cases": dict(cases),
        "failures": failures,
        "errors": errors,
        "phases": phases,
        "seconds": round(time.monotonic() - started, 1),
        "slowest": seconds.most_common(5),
    }


@pytest.mark.slow
def test_schemathesis_finds_no_gap_in_the_contract(live):
    result = run(live.url, config_for(live.url, live.tokens))
    report = "\n".join(
        f"{label} [{check}]: {text}" for (label, check), text in result["failures"].items()
    )
    print(f"schemathesis: {result['cases']} cases in {result['seconds']} s; {result['phases']}")
    assert not result["errors"], "\n".join(result["errors"])
    assert not result["failures"], report
    # Every phase ran (a phase that could not run would hide its gaps).
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert result["phases"].get(phase) == "success", result["phases"]
    assert sum(result["cases"].values()) > 1000
