"""Admission of expensive reads: what-if, outages, failovers, explanations, report generation,
and the cluster at a past time or position.

Each folds part of the log and can hold a core for a second or more, where a heartbeat costs
a millisecond. Twelve what-ifs sent at once kept both cores of the machine busy for 12 s and
raised the heartbeat latency from 4 ms to half a second. So a worker process runs at most
`EXPENSIVE_READS_PER_WORKER` of them at a time (default 3: gthread workers keep 5 of their 8
threads for ingest; a gevent worker gets its loop back between the pauses of the folds), and
one token at most `EXPENSIVE_READS_PER_TOKEN` of them in a worker (default 2: the dashboard
asks for outages and failovers at once; below the worker's limit, so that one token cannot
take a whole worker from the others). A request over either limit is answered 429 at once,
with a Retry-After of about how long such a read takes here: a thread waiting in a queue
would be a thread ingest cannot use. 0 lifts a limit.

The counts are per worker process (`serve` runs CLUSTERMON_WORKERS of them): one token may
run its share in each worker, and no more.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Blueprint

from api.problems import MEDIA_TYPE, Problem
from api.tokens import hash_token

# How Retry-After is guessed: the mean of recent expensive reads here, within these bounds.
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 60

TOO_MANY_REQUESTS = {
    "description": "Too many expensive reads in flight, from this token or on this worker: "
    "nothing was computed; retry after the number of seconds the Retry-After header gives.",
    "headers": {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": RETRY_AFTER_MIN},
        }
    },
    "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


class ExpensiveReads:
    """The in-flight counts of one worker process, and how long such reads took lately."""

    def __init__(self, per_token: int, per_worker: int):
        self.per_token = per_token
        self.per_worker = per_worker
        self._lock = threading.Lock()
        self._by_token: dict[str, int] = {}
        self._in_flight = 0
        self._mean_seconds = float(RETRY_AFTER_MIN)

    def enter(self, token: str) -> str | None:
        """Take a place for `token`; the refusal's reason when there is none."""
        with self._lock:
            mine = self._by_token.get(token, 0)
            if self.per_token and mine >= self.per_token:
                return (
                    f"this token already runs {mine} expensive read(s) on this worker, the "
                    f"most it may (CLUSTERMON_EXPENSIVE_READS_PER_TOKEN={self.per_token})"
                )
            if self.per_worker and self._in_flight >= self.per_worker:
                return (
                    f"this worker already runs {self._in_flight} expensive read(s), the most "
                    f"it takes so that ingest keeps its share "
                    f"(CLUSTERMON_EXPENSIVE_READS_PER_WORKER={self.per_worker})"
                )
            self._by_token[token] = mine + 1
            self._in_flight += 1
            return None

    def leave(self, token: str, seconds: float) -> None:
        with self._lock:
            left = self._by_token[token] - 1
            if left:
                self._by_token[token] = left
            else:
                del self._by_token[token]
            self._in_flight -= 1
            # A moving mean over the last dozen or so: the guess follows the log's growth.
            self._mean_seconds += (seconds - self._mean_seconds) / 8

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def retry_after(self) -> int:
        seconds = math.ceil(self._mean_seconds)
        return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, seconds))


def expensive_reads(app: Flask) -> ExpensiveReads:
    """The app's counts (one per worker process: gunicorn forks before any request)."""
    limiter = app.extensions.get("clustermon_expensive_reads")
    if limiter is None:
        limiter = app.extensions.setdefault(
            "clustermon_expensive_reads",
            ExpensiveReads(
                int(app.config["EXPENSIVE_READS_PER_TOKEN"]),
                int(app.config["EXPENSIVE_READS_PER_WORKER"]),
            ),
        )
    return limiter


def _token() -> str:
    # The view is behind `require`: the header holds a valid bearer token. Its hash, as the
    # token table keeps it: two tokens of one name are two tokens.
    return hash_token(request.headers["Authorization"].partition(" ")[2].strip())


def expensive(when: Callable[..., bool] | None = None):
    """Decorator for an expensive view: admitted within the limits above, else 429, and its
    OpenAPI documents the 429. Put it right above the `def` (under `@require` and
    `@blp.arguments`, so that authentication and validation answer first). `when(**kwargs)`,
    given the view's arguments, says whether this call is expensive (default: always)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if when is not None and not when(**kwargs):
                return view(*args, **kwargs)
            limiter = expensive_reads(current_app)
            token = _token()
            refusal = limiter.enter(token)
            if refusal is not None:
                raise Problem(
                    429,
                    refusal + "; retry later",
                    kind="too-many-requests",
                    headers={"Retry-After": str(limiter.retry_after())},
                )
            started = time.monotonic()
            try:
                return view(*args, **kwargs)
            finally:
                limiter.leave(token, time.monotonic() - started)

        return Blueprint.doc(responses={"429": TOO_MANY_REQUESTS})(wrapper)

    return decorate
