"""Sending the due deliveries: claim, deliver, record.

A row is claimed by a compare-and-set UPDATE that gives it a lease (`claimed_until`), so two
schedulers never send the same row at once, and a sender that died mid-send (its lease expires)
is replaced without anyone cleaning up. The message goes out outside any transaction; the
outcome is recorded only if the lease is still ours (`claimed_until` unchanged: a later claim
always sets a later lease). Killed between sending and recording, a message is sent again once
the lease expired, with the same id, which the receiver can drop (API.md, Notifications).

A failed attempt waits `min(1 h, 30 s * 2^(attempts-1)) * random()` (exponential backoff with
full jitter: receivers coming back from an outage are not hit by every sender at once) and is
`failed` after `max_attempts`. The channel's URL is unsealed from the read model at send time:
a channel removed meanwhile fails the row, a channel changed meanwhile gets its new URL.
"""

from __future__ import annotations

import logging
import random as random_module
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from eventstore.db import write_connection
from notify import transport
from notify.secrets import Unreadable, unseal
from notify.tables import deliveries
from projections.readmodel.current import current_state

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)


def backoff(attempts: int, random: Callable[[], float]) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt (full jitter)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return ceiling * random()


def _due(now: datetime) -> sa.ColumnElement[bool]:
    c = deliveries.c
    return sa.and_(
        c.state == "pending",
        sa.or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
        sa.or_(c.claimed_until.is_(None), c.claimed_until < now),
    )


class Sender:
    def __init__(
        self,
        engine: sa.Engine,
        secret_key: str,
        clock: Callable[[], datetime],
        *,
        max_attempts: int = 8,
        random: Callable[[], float] = random_module.random,
        timeout: float = 10.0,
    ) -> None:
        self.engine = engine
        self.secret_key = secret_key
        self.clock = clock
        self.max_attempts = max_attempts
        self.random = random
        self.timeout = timeout  # of one delivery

    # --- claim ------------------------------------------------------------------------------

    def claim(self, limit: int) -> tuple[datetime, list[Any]]:
        """Claim up to `limit` due rows, oldest first: (our lease, the rows)."""
        now = self.clock()
        lease = now + LEASE
        c = deliveries.c
        picked = sa.select(c.seq).where(_due(now)).order_by(c.seq).limit(limit)
        if self.engine.dialect.name == "postgresql":
            # Another sender's claim in flight: skip its rows rather than queue behind it.
            picked = picked.with_for_update(skip_locked=True)
        with write_connection(self.engine) as conn, conn.begin():
            seqs = conn.execute(picked).scalars().all()
            if not seqs:
                return lease, []
            # The WHERE is repeated on the rows themselves: the compare-and-set, whatever the
            # isolation (SQLite's BEGIN IMMEDIATE and PostgreSQL's row locks make it hold
            # anyway). Two statements, not `IN (subquery LIMIT n)`, which PostgreSQL may
            # re-run per row and so claim more than `limit`.
            claim = (
                deliveries.update()
                .where(c.seq.in_(seqs), _due(now))
                .values(claimed_until=lease)
                .returning(c.seq, c.id, c.channel, c.attempts, c.payload)
            )
            rows = sorted(conn.execute(claim).all(), key=lambda row: row.seq)
        return lease, rows

    # --- record -----------------------------------------------------------------------------

    def _record(self, row: Any, lease: datetime, **values: Any) -> bool:
        c = deliveries.c
        ours = sa.and_(c.seq == row.seq, c.state == "pending", c.claimed_until == lease)
        update = deliveries.update().where(ours).values(claimed_until=None, **values)
        if self.engine.dialect.name == "postgresql":
            # One statement is its own transaction: autocommit saves the COMMIT's round trip
            # (a third of a delivery's time; BENCHMARKS.md, Notifications).
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                done = conn.execute(update).rowcount
        else:
            with write_connection(self.engine) as conn, conn.begin():
                done = conn.execute(update).rowcount
        if not done:
            log.warning(
                "delivery %s to channel %r: the lease ran out before its outcome was recorded"
                " (another sender may repeat it)",
                row.id,
                row.channel,
            )
        return bool(done)

    def _sent(self, row: Any, lease: datetime) -> bool:
        return self._record(
            row, lease, state="sent", sent_at=self.clock(), attempts=row.attempts + 1
        )

    def _fail(self, row: Any, lease: datetime, reason: str, *, final: bool = False) -> None:
        attempts = row.attempts + 1
        if final or attempts >= self.max_attempts:
            log.warning("delivery %s to channel %r failed: %s", row.id, row.channel, reason)
            self._record(row, lease, state="failed", attempts=attempts, last_error=reason)
            return
        wait = backoff(attempts, self.random)
        log.info(
            "delivery %s to channel %r: attempt %d failed (%s), next in %.0f s",
            row.id,
            row.channel,
            attempts,
            reason,
            wait.total_seconds(),
        )
        self._record(
            row,
            lease,
            attempts=attempts,
            last_error=reason,
            next_attempt_at=self.clock() + wait,
        )

    def _release(self, rows: list[Any], lease: datetime) -> None:
        """Give back claimed rows we will not send in time (another pass takes them)."""
        c = deliveries.c
        seqs = [row.seq for row in rows]
        with write_connection(self.engine) as conn, conn.begin():
            conn.execute(
                deliveries.update()
                .where(c.seq.in_(seqs), c.state == "pending", c.claimed_until == lease)
                .values(claimed_until=None)
            )

    # --- one pass ---------------------------------------------------------------------------

    def send_due(self, limit: int = 100) -> int:
        """Deliver what is due (at most `limit` rows); the number of rows sent."""
        lease, rows = self.claim(limit)
        if not rows:
            return 0
        channels = current_state(self.engine).channels
        sent = 0
        for index, row in enumerate(rows):
            # A row sent after its lease ran out could be sent by another sender too.
            if self.clock() + timedelta(seconds=self.timeout) >= lease:
                self._release(rows[index:], lease)
                break
            channel = channels.get(row.channel)
            if channel is None:
                self._fail(row, lease, "channel removed", final=True)
                continue
            if not channel.enabled:
                self._fail(row, lease, "channel disabled", final=True)
                continue
            try:
                url = unseal(channel.url_encrypted, self.secret_key)
            except Unreadable as exc:
                self._fail(row, lease, str(exc))  # the admin may put the channel again
                continue
            message = {**orjson.loads(row.payload), "id": str(row.id)}
            try:
                transport.deliver(url, message, timeout=self.timeout)
            except transport.DeliveryError as exc:
                self._fail(row, lease, str(exc))
                continue
            sent += self._sent(row, lease)
        return sent
