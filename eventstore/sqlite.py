"""The SQLite store: the steps of an append in Python with SQLAlchemy Core.

Writers are serialised by `BEGIN IMMEDIATE` (eventstore/db.py), so the checks below see every
earlier append, and the stamp is raised to the last event's recorded_at.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import sqlalchemy as sa

from domain.events import RecordedEvent
from eventstore.db import write_connection
from eventstore.store import (
    AppendResult,
    ConcurrencyError,
    EventStore,
    _expected_by_stream,
)
from eventstore.tables import events as events_table


class SQLiteEventStore(EventStore):
    dialect = "sqlite"

    def _append_stamped(self, events, expected_version, connection, stamp) -> AppendResult:
        if connection is not None:
            return self._append(connection, events, expected_version, stamp)
        with write_connection(self.engine) as conn, conn.begin():
            return self._append(conn, events, expected_version, stamp)

    def _append(self, conn, new_events, expected_version, stamp) -> AppendResult:
        """The reference for the PostgreSQL functions (module docstring)."""
        fresh, duplicates = self._split_duplicates(conn, new_events)
        if not fresh:
            return AppendResult([], duplicates)
        streams = {e.event.stream for e in fresh}
        versions = self._stream_versions(conn, streams)
        self._check_expected(expected_version, versions, streams)

        last = conn.execute(
            sa.select(events_table.c.recorded_at).order_by(events_table.c.position.desc()).limit(1)
        ).scalar()
        recorded_at = last if last is not None and last > stamp else stamp
        rows = []
        for new in fresh:
            stream = new.event.stream
            versions[stream] += 1
            rows.append(
                {
                    "event_id": new.event_id,
                    "stream": stream,
                    "version": versions[stream],
                    "type": new.event.type,
                    "schema_version": new.event.schema_version,
                    "data": orjson.dumps(new.event).decode(),
                    "metadata": orjson.dumps(new.metadata).decode(),
                    "occurred_at": new.occurred_at or recorded_at,
                    "recorded_at": recorded_at,
                }
            )
        insert = events_table.insert().returning(
            events_table.c.position, sort_by_parameter_order=True
        )
        positions = conn.execute(insert, rows).scalars().all()
        recorded = [
            RecordedEvent(
                position,
                new.event_id,
                row["stream"],
                row["version"],
                row["type"],
                row["schema_version"],
                new.event,
                new.metadata,
                row["occurred_at"],
                recorded_at,
            )
            for position, new, row in zip(positions, fresh, rows, strict=True)
        ]
        return AppendResult(recorded, duplicates)

    def _split_duplicates(self, conn, new_events):
        ids = [e.event_id for e in new_events]
        seen = set(
            conn.execute(
                sa.select(events_table.c.event_id).where(events_table.c.event_id.in_(ids))
            ).scalars()
        )
        fresh, duplicates = [], []
        for new in new_events:
            if new.event_id in seen:
                duplicates.append(new.event_id)
            else:
                seen.add(new.event_id)
                fresh.append(new)
        return fresh, duplicates

    def _stream_versions(self, conn, streams):
        sql = (
            "SELECT value, coalesce((SELECT max(version) FROM events WHERE stream = value),"
            " (SELECT max(version) FROM archived_tails WHERE stream = value))"
            " FROM json_each(:streams)"
        )
        params = {"streams": orjson.dumps(list(streams)).decode()}
        return {s: v or 0 for s, v in conn.execute(sa.text(sql), params)}

    @staticmethod
    def _check_expected(expected, versions: Mapping[str, int], streams: set[str]) -> None:
        for stream, version in _expected_by_stream(expected, streams).items():
            if versions[stream] != version:
                raise ConcurrencyError(stream, version, versions[stream])
