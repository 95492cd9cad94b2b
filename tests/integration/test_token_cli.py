"""`clustermon token create --servers` and `token list`, through the real console entry point."""

from __future__ import annotations

from api.tokens import TokenVerifier
from eventstore import create_engine
from tests.integration.test_cli_setup import clustermon


def test_a_bound_agent_token_is_created_and_listed(database_url):
    done = clustermon(
        database_url,
        "token",
        "create",
        "--role",
        "agent",
        "--name",
        "web",
        "--servers",
        "web01, web*",
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("cm_agent_")
    assert clustermon(database_url, "token", "create", "--role", "viewer", "--name", "me").stdout

    listed = clustermon(database_url, "token", "list")

    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()}
    assert rows["web"][1:3] == ["agent", "servers=web01,web*"]
    assert rows["me"][1:3] == ["viewer", "servers=(every server)"]
    assert token not in listed.stdout
    engine = create_engine(database_url)
    try:
        assert TokenVerifier(engine).verify(token).servers == ("web01", "web*")
    finally:
        engine.dispose()


def test_a_binding_is_refused_where_it_means_nothing_or_is_malformed(database_url):
    viewer = clustermon(
        database_url, "token", "create", "--role", "viewer", "--name", "v", "--servers", "web01"
    )
    assert viewer.returncode == 2
    assert "only agent tokens are bound to servers" in viewer.stderr
    malformed = clustermon(
        database_url, "token", "create", "--role", "agent", "--name", "a", "--servers", "web/01,"
    )
    assert malformed.returncode == 2
    assert "none empty" in malformed.stderr
    assert viewer.stdout == malformed.stdout == ""
    assert clustermon(database_url, "token", "list").stdout == ""
