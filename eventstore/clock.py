"""The clock is injected everywhere time matters, so tests can pin it (freezegun or a lambda)."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
