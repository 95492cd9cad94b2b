"""Talking to clustermon: posting batches of heartbeats, reading the heartbeat period, and
what each answer means for the heartbeats in the spool (API.md, `POST /heartbeats`).

| answer                         | the batch                   | then                          |
| ------------------------------ | --------------------------- | ----------------------------- |
| 202                            | leaves the spool            | the next batch, at once       |
| 422 (invalid)                  | leaves the spool, logged    | the next batch (a retry of    |
|                                |                             | the same heartbeats cannot    |
|                                |                             | succeed)                      |
| 413 (too large)                | stays                       | smaller batches               |
| 429                            | stays                       | wait for its Retry-After      |
| 5xx, no answer, timeout, other | stays                       | exponential backoff with full |
|                                |                             | jitter (and at least any      |
|                                |                             | Retry-After)                  |
| 401, 403                       | stays                       | the agent stops (`Refused`)   |
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from collector.agent.spool import Spool

log = logging.getLogger("clustermon.agent")

MAX_BATCH = 1000  # API.md: up to 1,000 heartbeats per request
MAX_BATCH_BYTES = 1 << 20  # well below the server's 2 MB request limit
MAX_RETRY_AFTER = 3600.0  # a Retry-After beyond an hour is not believed
USER_AGENT = "clustermon-agent"


class Refused(Exception):
    """clustermon refused the token (401) or its role or binding (403): nothing the agent
    can do by retrying, so it stops, saying so loudly."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass
class Outcome:
    """What one POST of a batch got. `kind`: delivered, rejected (422: drop it), smaller
    (413: split it), retry (keep it and wait)."""

    kind: str
    detail: str = ""
    retry_after: float | None = None  # seconds the server asked us to wait
    errors: Any = None  # a 422's per-field errors
    answer: dict = field(default_factory=dict)


class ClustermonApi:
    """The two calls the agent makes, on one HTTP client (connections are reused)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,  # the token is not sent anywhere else than --url
            headers={"User-Agent": USER_AGENT},
        )
        self._auth = {"Authorization": f"Bearer {token}"}
        self._period_problem: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ClustermonApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def post_heartbeats(self, heartbeats: list[dict]) -> Outcome:
        """POST one batch; raises Refused on 401/403."""
        url = f"{self.base_url}/api/v1/heartbeats"
        try:
            response = self._client.post(
                url,
                content=orjson.dumps({"heartbeats": heartbeats}),
                headers={**self._auth, "Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            return Outcome("retry", f"no answer from {self.base_url} ({_transport_error(exc)})")
        status = response.status_code
        problem = _json(response)
        detail = str(problem.get("detail") or problem.get("title") or response.reason_phrase)
        if status == 202:
            return Outcome("delivered", answer=problem)
        if status in (401, 403):
            raise Refused(status, detail)
        if status == 422:
            return Outcome("rejected", detail, errors=problem.get("errors"))
        if status == 413:
            return Outcome("smaller", detail)
        retry_after = self._retry_after(response.headers.get("Retry-After"))
        if status == 429:
            return Outcome("retry", f"429 {detail}", retry_after=retry_after)
        if 300 <= status < 400:
            where = response.headers.get("Location", "elsewhere")
            detail = f"redirected to {where}: give that address as --url"
        elif 400 <= status < 500:
            detail = f"{detail} (is --url clustermon's base address?)"
        return Outcome("retry", f"{status} {detail}", retry_after=retry_after)

    def heartbeat_period(self) -> int | None:
        """The cluster's `heartbeat_frequency_seconds`, or None (with the reason logged) when
        it cannot be read: clustermon away, or one without that endpoint."""
        url = f"{self.base_url}/api/v1/cluster/configuration"
        try:
            response = self._client.get(url, headers=self._auth)
        except httpx.TransportError as exc:
            log.debug("heartbeat period not read: %s", _transport_error(exc))
            return None
        if response.status_code != 200:
            detail = _json(response).get("detail") or response.reason_phrase
            self._period_unread(f"{response.status_code}: {detail}")
            return None
        value = _json(response).get("heartbeat_frequency_seconds")
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 3600:
            self._period_problem = None
            return value
        self._period_unread(f"no usable heartbeat_frequency_seconds: {value!r}")
        return None

    def _period_unread(self, why: str) -> None:
        """Said once per reason (it is asked every few minutes), never once per read."""
        if why != self._period_problem:
            log.info("heartbeat period not read from clustermon (%s)", why)
        self._period_problem = why

    def _retry_after(self, header: str | None) -> float | None:
        """Seconds from a Retry-After header (a number, or an HTTP date on our clock)."""
        if not header:
            return None
        header = header.strip()
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - self._clock()).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Backoff:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and
    Jitter"): the n-th wait in a row is uniform in [0, min(cap, base * 2^n)], so agents that
    lost clustermon together do not all come back in the same second. `rand` is injectable."""

    def __init__(
        self, base: float = 1.0, cap: float = 60.0, rand: Callable[[], float] = random.random
    ):
        self.base = base
        self.cap = cap
        self._rand = rand
        self.failures = 0

    def next_wait(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return self._rand() * ceiling

    def reset(self) -> None:
        self.failures = 0


class Delivery:
    """Sends the spool to clustermon, oldest first, in batches; see the module's table."""

    def __init__(self, spool: Spool, api: ClustermonApi, backoff: Backoff | None = None):
        self.spool = spool
        self.api = api
        self.backoff = backoff or Backoff()
        self.batch = MAX_BATCH
        self.delivered = 0
        self.rejected = 0

    def run(self, stopping: Callable[[], bool] = lambda: False) -> float | None:
        """Deliver until the spool is empty (None) or an answer says to wait: the seconds to
        wait before trying again. Raises Refused on 401/403 (the spool is left as it is)."""
        while len(self.spool) and not stopping():
            last_seq, batch = self.spool.oldest(self.batch, MAX_BATCH_BYTES)
            outcome = self.api.post_heartbeats(batch)
            try:
                self._settle(outcome, last_seq, batch)
            except OSError as exc:
                # The spool could not record the outcome: the batch stays and goes again
                # (a repeat is a duplicate to clustermon), after a pause.
                log.error("spool %s cannot be written: %s", self.spool.path, exc)
                return self.backoff.next_wait()
            if outcome.kind == "retry":
                wait = self.backoff.next_wait()
                if outcome.retry_after is not None:
                    wait = max(wait, outcome.retry_after)
                level = logging.WARNING if self.backoff.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "heartbeats not delivered (%s); %d kept in the spool, next attempt in %.1f s",
                    outcome.detail,
                    len(self.spool),
                    wait,
                )
                return wait
        return None

    def _settle(self, outcome: Outcome, last_seq: int, batch: list[dict]) -> None:
        """What an answer does to the batch in the spool."""
        if outcome.kind == "delivered":
            self.spool.remove_through(last_seq, "delivered")
            self.delivered += len(batch)
            if self.backoff.failures:
                log.info(
                    "clustermon answers again: delivered after %d failed attempts",
                    self.backoff.failures,
                )
            self.backoff.reset()
            log.debug(
                "delivered %d heartbeats (%s duplicates); %d left in the spool",
                len(batch),
                outcome.answer.get("duplicates", "?"),
                len(self.spool),
            )
        elif outcome.kind == "rejected" or (outcome.kind == "smaller" and len(batch) == 1):
            self.spool.remove_through(last_seq, "rejected")
            self.rejected += len(batch)
            log.error(
                "clustermon refused a batch of %d heartbeats as invalid (422: %s); they are"
                " dropped, since sending them again cannot succeed. Errors: %s",
                len(batch),
                outcome.detail,
                _cut(orjson.dumps(outcome.errors).decode(), 2000),
            )
        elif outcome.kind == "smaller":
            self.batch = max(1, len(batch) // 2)
            log.warning("clustermon found the batch too large: now %d a batch", self.batch)


def _json(response: httpx.Response) -> dict:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}" if str(exc) else "cannot connect"
    return f"{exc.__class__.__name__}: {exc}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
