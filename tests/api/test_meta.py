from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import heartbeat


def test_health_needs_no_token(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["database"] == "ok"


def test_readiness_reports_projection_lag(client, post, tokens):
    post({"heartbeats": [heartbeat(server=f"s{i}") for i in range(3)]})
    lag = client.get("/readyz").get_json()["projection_lag"]
    assert lag["head"] == 3
    assert lag["events"] == 3 - lag["checkpoint"]
    client.get("/api/v1/cluster", headers=tokens["viewer"])  # catches the read tables up
    assert client.get("/readyz").get_json()["projection_lag"]["events"] == 0


def test_openapi_names_the_contract(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in (
        "/api/v1/heartbeats",
        "/api/v1/cluster",
        "/api/v1/cluster/configuration",
        "/api/v1/servers/{server}/components/{component}",
        "/api/v1/events",
        "/api/v1/events/stream",
        "/api/v1/servers/{server}/components/{component}/history",
    ):
        assert path in paths, path
    assert client.get("/api/v1/openapi.json").get_json()["paths"] == paths
    for probe in ("healthz", "readyz", "metrics"):  # documented too, as needing no token
        for path in (f"/{probe}", f"/api/v1/{probe}"):
            assert paths[path]["get"]["security"] == [], path
            assert str(client.get(path).status_code) in paths[path]["get"]["responses"]
    # The times' range and answers' schemas: tests/api/test_contract.py.
    assert "Heartbeat" in spec["components"]["schemas"]
    # Errors are documented as what they are: RFC 9457 problem documents.
    error = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert list(error) == ["application/problem+json"]
    assert set(spec["components"]["schemas"]["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "detail",
    }
    assert client.get("/docs").status_code == 200  # Swagger UI: tests/api/test_contract.py


def _sample(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_metrics_count_ingest_without_cluster_data(client, post):
    before = client.get("/metrics").get_data(as_text=True)
    event_id = "8f14e45f-ceea-467f-a0e6-6a9c4cba1b2e"
    post({"heartbeats": [heartbeat(server="secret-server-name", event_id=event_id)] * 2})
    post(heartbeat(server="other"))
    response = client.get("/metrics")
    # Prometheus' own content type, once (it names its charset; Flask added a second one).
    assert response.headers["Content-Type"].count("charset") == 1
    body = response.get_data(as_text=True)
    accepted = "clustermon_heartbeats_accepted_total"
    duplicates = "clustermon_heartbeats_duplicate_total"
    assert _sample(body, accepted) - _sample(before, accepted) == 2
    assert _sample(body, duplicates) - _sample(before, duplicates) == 1
    assert _sample(body, "clustermon_append_seconds_count") > _sample(
        before, "clustermon_append_seconds_count"
    )
    assert 'clustermon_http_requests_total{endpoint="/api/v1/heartbeats"' in body
    assert "clustermon_projection_lag_events" in body
    assert "secret-server-name" not in body


def test_unknown_paths_and_methods_are_problems(client, tokens):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    wrong = client.delete("/api/v1/events", headers=tokens["admin"])
    assert wrong.status_code == 405
    assert wrong.mimetype == "application/problem+json"


def test_an_unreachable_database_is_503_never_500(tmp_path):
    from cli.main import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/missing-dir/clustermon.db"})
    client = app.test_client()
    headers = {"Authorization": "Bearer cm_agent_whatever"}
    for response in (
        client.post("/api/v1/heartbeats", json=heartbeat(), headers=headers),
        client.get("/api/v1/cluster", headers=headers),
    ):
        assert response.status_code == 503
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "5"
    assert client.get("/readyz").status_code == 503


def test_invented_methods_and_paths_do_not_grow_the_metrics(client):
    # Each label value is a series of its own: labels taken from what clients send would let
    # anyone without a token grow /metrics (and every worker's file) without bound.
    def series() -> set[tuple]:
        text = client.get("/metrics").get_data(as_text=True)
        return {
            (sample.name, tuple(sorted(sample.labels.items())))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    for n in range(3):  # the series that the first such requests (and scrapes) make
        client.open(f"/api/v1/cluster/nope{n}", method=f"BREW{n}")
        client.open(f"/no/such/path/{n}", method="GET")
        before = series()
    for n in range(3, 60):
        client.open(f"/api/v1/cluster/nope{n}", method=f"BREW{n}")
        client.open(f"/no/such/path/{n}", method="GET")
    assert series() - before == set()
    methods = {dict(labels).get("method") for _, labels in before}
    assert "BREW0" not in methods and "other" in methods
