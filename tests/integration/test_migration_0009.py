"""Migration 0009 (server-bound tokens, known servers) up and down on both databases, with
tokens in the table: existing tokens stay valid and unbound, and a downgrade keeps them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

import migrations
from api.tokens import TokenVerifier, create_token, hash_token
from eventstore import create_engine


def _columns(engine, table):
    with engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def _tables(engine):
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_0009_up_and_down_keeps_the_tokens(empty_url):
    migrations.upgrade(empty_url, "0008")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (name, role, token_hash, created_at)"
                    " VALUES ('old-agent', 'agent', :hash, :at)"
                ),
                {"hash": hash_token("cm_agent_old"), "at": datetime(2026, 11, 27, tzinfo=UTC)},
            )

        migrations.upgrade(empty_url, "0009")

        assert "servers" in _columns(engine, "api_tokens")
        assert "known_servers" in _tables(engine)
        old = TokenVerifier(engine).verify("cm_agent_old")
        assert old is not None and old.servers is None  # unbound, as before
        bound = create_token(engine, lambda: datetime.now(UTC), "web", "agent", ["web*"])
        assert TokenVerifier(engine).verify(bound).servers == ("web*",)

        migrations.downgrade(empty_url, "0008")

        assert "servers" not in _columns(engine, "api_tokens")
        assert "known_servers" not in _tables(engine)
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM api_tokens ORDER BY id")).scalars()
            assert list(names) == ["old-agent", "web"]
        # The role check survives SQLite's copy of the table.
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (name, role, token_hash, created_at)"
                    " VALUES ('x', 'root', 'h', :at)"
                ),
                {"at": datetime(2026, 11, 27, tzinfo=UTC)},
            )

        migrations.upgrade(empty_url)  # and up again
        assert "servers" in _columns(engine, "api_tokens")
    finally:
        engine.dispose()
