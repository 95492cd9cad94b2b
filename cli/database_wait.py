"""Waiting for PostgreSQL before a long-running command starts (`serve`, `run`, `scheduler`).

Started together with its database (a boot, a `docker compose up`, a PostgreSQL restart),
clustermon would otherwise die on its first query with a traceback, or loop on one. Instead it
says in one line what it waits for and why, tries again every `retry_seconds`, and goes on once
the database answers. A failure that waiting cannot cure (a wrong password, a database or role
that does not exist) ends the command with that reason instead. SQLite needs no waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import click
import sqlalchemy as sa

from eventstore.db import create_engine, is_unavailable

# The server answered, and refused for good: waiting will not change these.
_DEFINITIVE = (
    "password authentication failed",
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "no password supplied",
)
REMIND_EVERY_SECONDS = 60.0


def wait_for_database(
    url: str,
    *,
    retry_seconds: float = 1.0,
    echo: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the database at `url` answers; until then, retry every `retry_seconds`,
    saying so in one line (again when the reason changes, and every minute)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    say = echo or (lambda line: click.echo(line, err=True))
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    engine = create_engine(url, poolclass=sa.NullPool)
    try:
        said, said_at, waited_since = None, 0.0, None
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            except sa.exc.DBAPIError as exc:
                if not is_unavailable(exc) or _definitive(exc):
                    raise click.ClickException(
                        f"cannot use the database at {where}: {_first_line(exc)}"
                    ) from None
                reason = _first_line(exc)
                now = monotonic()
                waited_since = waited_since if waited_since is not None else now
                if reason != said or now - said_at >= REMIND_EVERY_SECONDS:
                    say(
                        f"clustermon: waiting for the database at {where} ({reason});"
                        f" retrying every {retry_seconds:g} s"
                    )
                    said, said_at = reason, now
                sleep(retry_seconds)
                continue
            if waited_since is not None:
                say(
                    f"clustermon: the database at {where} answers"
                    f" (after {monotonic() - waited_since:.0f} s); starting"
                )
            return
    finally:
        engine.dispose()


def _first_line(exc: sa.exc.DBAPIError) -> str:
    """The driver's own words, first line (psycopg adds a hint on the next)."""
    text = str(exc.orig).strip() or exc.orig.__class__.__name__
    return text.splitlines()[0].removeprefix("connection failed: ")


def _definitive(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig)
    return any(words in text for words in _DEFINITIVE)
