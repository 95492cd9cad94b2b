"""Schemathesis against our own OpenAPI document: valid and invalid generated requests to every
operation; none may produce a 5xx, every 4xx must be application/problem+json, and every success
must be a status and media type the document names.

Runs on SQLite to stay fast; the hand-written API tests cover both databases. (schemathesis'
own pytest plugin does not support pytest 9 yet, so the operations are driven directly.)
"""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from api.services import services
from api.tokens import create_token
from cli.main import create_app


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, sqlite_template):
    path = tmp_path_factory.mktemp("fuzz") / "clustermon.db"
    shutil.copy(sqlite_template, path)
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "SSE_MAX_SECONDS": 0.05})
    svc = services(app)
    app.config["FUZZ_TOKENS"] = {
        role: create_token(svc.engine, svc.clock, f"fuzz-{role}", role)
        for role in ("agent", "admin")
    }
    yield app
    svc.engine.dispose()


def _operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(fuzz_app, mode):
    tokens = fuzz_app.config["FUZZ_TOKENS"]
    operations = _operations(fuzz_app)
    assert len(operations) >= 7
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (
            raw.get("parameters") or raw.get("requestBody")
        ):
            continue  # nothing to make invalid (the probes)
        _fuzz(
            operation, mode, tokens["agent" if operation.path.endswith("/heartbeats") else "admin"]
        )


def _fuzz(operation, mode, token):
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        derandomize=True,  # CI must be reproducible; run with a seed by hand to explore
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        label = f"{case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, label + ": " + response.text[:500]
        headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = headers.get("content-type", "")
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        if response.status_code >= 400:
            assert content_type.startswith("application/problem+json"), label
        elif response.status_code != 204:  # a success is documented with its media type
            documented = operation.definition.raw["responses"].get(str(response.status_code))
            assert documented is not None, label + ": undocumented status"
            assert any(content_type.startswith(t) for t in documented.get("content", {})), (
                f"{label}: {content_type} is not documented"
            )

    check()
