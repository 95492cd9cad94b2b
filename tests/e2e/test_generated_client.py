"""A client generated from /openapi.json by openapi-python-client (offline, in a temporary
folder) has a typed model for every JSON answer, and works against a live server."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e.live_app import LiveApp, serve

PACKAGE = "clustermon_generated_client"


def _generator() -> str:
    found = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    found = found or shutil.which("openapi-python-client")
    if found is None:
        message = "openapi-python-client is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def live(tmp_path_factory, sqlite_template) -> Iterator[LiveApp]:
    with serve(sqlite_template, tmp_path_factory.mktemp("client-server")) as app:
        yield app


@pytest.fixture(scope="module")
def generated(live, tmp_path_factory):
    """The client package, generated from the live server's document and importable."""
    import httpx

    folder = tmp_path_factory.mktemp("client")
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(f"{live.url}/openapi.json").content)
    config = folder / "config.json"
    # No post hooks: they run ruff from PATH, which the generated code does not need.
    config.write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    result = subprocess.run(
        [
            _generator(),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every warning the generator prints is a part of the document it could not type.
    assert "Unable to" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _operations(package) -> list:
    api = importlib.import_module(f"{package.__name__}.api")
    modules = []
    for tag in Path(api.__file__).parent.iterdir():
        if tag.is_dir() and (tag / "__init__.py").exists():
            for module in sorted(tag.glob("*.py")):
                if module.stem != "__init__":
                    modules.append(
                        importlib.import_module(f"{api.__name__}.{tag.name}.{module.stem}")
                    )
    return modules


@pytest.mark.slow
def test_every_json_answer_has_a_typed_model(generated):
    models = importlib.import_module(f"{PACKAGE}.models")
    untyped = []
    operations = _operations(generated)
    assert len(operations) >= 25
    for module in operations:
        answer = inspect.signature(module._parse_response).return_annotation
        # An operation that answers JSON parses it into models; text answers (metrics, CSV)
        # are str. Never Any, never a bare dict.
        if "Any" in str(answer) or "dict" in str(answer):
            untyped.append(f"{module.__name__}: {answer}")
    assert not untyped, untyped
    # The audit, report and explain answers are models with their members, not empty ones.
    for name in ("Outages", "Failovers", "WhatIf", "Explanation", "ReportList", "Report"):
        model = getattr(models, name)
        assert len(model.__attrs_attrs__) >= 2, name
    # One model per event type.
    assert hasattr(models, "HeartbeatRecordedEvent") and hasattr(models, "ComponentTimedOutEvent")


@pytest.mark.slow
def test_the_generated_client_talks_to_a_live_server(generated, live):
    client_module = importlib.import_module(f"{PACKAGE}.client")
    models = importlib.import_module(f"{PACKAGE}.models")
    post_heartbeats = importlib.import_module(f"{PACKAGE}.api.heartbeats.post_api_v1_heartbeats")
    get_events = importlib.import_module(f"{PACKAGE}.api.events.get_api_v1_events")
    get_outages = importlib.import_module(f"{PACKAGE}.api.audit.get_api_v1_audit_outages")

    def client(role: str):
        return client_module.AuthenticatedClient(base_url=live.url, token=live.tokens[role])

    beat = models.Heartbeat(
        server="gen01",
        component=models.HeartbeatComponent.SERVICE,
        sent_at=datetime.now(UTC).replace(microsecond=0),
        ip="10.0.0.7",
        product="ProGet",
    )
    with client("agent") as agent:
        ingested = post_heartbeats.sync(client=agent, body=beat)
    assert isinstance(ingested, models.IngestResult), ingested
    assert ingested.accepted == 1

    with client("viewer") as viewer:
        page = get_events.sync(client=viewer, server="gen01")
        outages = get_outages.sync(client=viewer)
    assert isinstance(page, models.EventsPage), page
    [event] = page.events
    assert isinstance(event, models.HeartbeatRecordedEvent)  # chosen by its `type`
    assert event.data.server == "gen01" and event.data.ip == "10.0.0.7"
    assert isinstance(outages, models.Outages), outages
    assert outages.outages == []
