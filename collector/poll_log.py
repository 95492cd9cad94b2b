"""The `target_polls` table: what the last poll of each target got (GET /targets' `last_poll`).

Written by the leading scheduler's poller in batches (one statement for every poll that ended
since the last write) rather than one transaction per poll: with 1,000 targets every 30 s that
is one small write a second instead of 33, and the table only ever shows the latest poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.tables import target_polls
from eventstore.db import write_connection

# SQLite allows 32,766 bound values in one statement (5 a row): stay well below.
ROWS_PER_STATEMENT = 1000


@dataclass(frozen=True, slots=True)
class PollRow:
    server: str
    at: datetime  # when the poll started (our clock)
    ok: bool
    error: str | None  # why it failed, worded for people
    seconds: float  # how long it took


def write_polls(engine: sa.Engine, rows: Sequence[PollRow]) -> None:
    """Upsert the rows (one per server: a later row of the same server wins)."""
    latest = {row.server: row for row in rows}
    if not latest:
        return
    values = [
        {"server": r.server, "at": r.at, "ok": r.ok, "error": r.error, "seconds": r.seconds}
        for r in latest.values()
    ]
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with write_connection(engine) as conn, conn.begin():
        for start in range(0, len(values), ROWS_PER_STATEMENT):
            statement = insert(target_polls).values(values[start : start + ROWS_PER_STATEMENT])
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[target_polls.c.server],
                    set_={
                        name: statement.excluded[name] for name in ("at", "ok", "error", "seconds")
                    },
                )
            )


def last_polls(engine: sa.Engine, server: str | None = None) -> dict[str, PollRow]:
    """Every target's last poll (or `server`'s) as the table has it: what a new leader resumes
    from, and GET /targets' `last_poll`."""
    query = sa.select(target_polls)
    if server is not None:
        query = query.where(target_polls.c.server == server)
    with engine.connect() as conn:
        return {
            row.server: PollRow(row.server, row.at, row.ok, row.error, row.seconds)
            for row in conn.execute(query)
        }


def forget(engine: sa.Engine, server: str) -> None:
    """Drop a removed target's last poll: added again later, it must not show the old one."""
    with engine.begin() as conn:
        conn.execute(target_polls.delete().where(target_polls.c.server == server))
