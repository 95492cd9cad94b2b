"""Waiting for the store's announcements: PostgreSQL LISTEN on the channel every append NOTIFYs.

Used by whoever follows the log (the projection runner, the API's live tail) to wake up as soon
as something is appended instead of polling. Notifications are only a wake-up call: followers
still read the log from their own position, so a lost one costs at most `timeout` of delay.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore.store import NOTIFY_CHANNEL

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


class Listener:
    """A dedicated autocommit psycopg connection LISTENing on the store's channel. Without one
    (not PostgreSQL, or the LISTEN failed or its connection broke), `wait` sleeps, and on
    PostgreSQL tries to LISTEN again every `RETRY_SECONDS`."""

    RETRY_SECONDS = 30.0

    def __init__(self, engine: sa.Engine) -> None:
        self.conn: psycopg.Connection | None = None
        self._url: str | None = None
        self._retry_at = 0.0
        if engine.dialect.name == "postgresql":
            self._url = engine.url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            self._connect()

    def _connect(self) -> None:
        import psycopg

        assert self._url is not None  # only called on PostgreSQL, where the URL is set
        try:
            self.conn = psycopg.connect(self._url, autocommit=True)
            self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error:
            log.exception("LISTEN %s failed; polling instead", NOTIFY_CHANNEL)
            self._lost()

    def _lost(self) -> None:
        self.close()
        self._retry_at = time.monotonic() + self.RETRY_SECONDS

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Until the next notification (True) or `timeout` seconds (False; or until `stop` is
        set, when polling). A notification sent since the LISTEN and not yet waited for returns
        at once."""
        if self.conn is None and self._url is not None and time.monotonic() >= self._retry_at:
            self._connect()
        if self.conn is None:
            _sleep(timeout, stop)
            return False
        try:
            return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
        except Exception:
            log.exception("LISTEN connection lost; polling instead")
            self._lost()
            _sleep(timeout, stop)
            return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _sleep(timeout: float, stop: threading.Event | None) -> None:
    if stop is None:
        time.sleep(timeout)
    else:
        stop.wait(timeout)
