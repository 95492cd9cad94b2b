"""The log over HTTP: paged reads and the live Server-Sent Events stream."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time

import orjson
from flask import Response, current_app, g, request, stream_with_context

from api import settings
from api.auth import require
from api.livetail import LogTail
from api.problems import Problem, invalid
from api.query import Blueprint
from api.responses import EVENT_STREAM, EventsPageSchema
from api.schemas import MAX_POSITION, EventsQuerySchema, StreamQuerySchema
from api.services import services
from domain.events import ChannelConfigured, Event, TargetConfigured, component_stream
from domain.urls import masked
from eventstore.store import RecordedEvent

log = logging.getLogger(__name__)

blp = Blueprint("events", __name__, url_prefix="/api/v1", description="The event log")


def event_json(r: RecordedEvent) -> dict:
    """An event as the log's readers get it (GET /events, the live stream)."""
    return {
        "position": r.position,
        "event_id": r.event_id,
        "type": r.type,
        "stream": r.stream,
        "version": r.version,
        "schema_version": r.event.schema_version,
        "recorded_at": r.recorded_at,
        "occurred_at": r.occurred_at,
        "data": _shown(r.event),
        "metadata": r.metadata,
    }


def _shown(event: Event) -> Event | dict:
    """The event's data as a viewer may see it: a target's URL with its secrets masked (the
    log keeps it whole for the poller), a channel without its sealed URL (only the sender
    needs it; sealed is not shown: a leaked secret key would open every copy ever served)."""
    if isinstance(event, TargetConfigured):
        return dataclasses.replace(event, url=masked(event.url))
    if isinstance(event, ChannelConfigured):
        data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        del data["url_encrypted"]
        return data
    return event


@blp.route("/events", methods=["GET"])
@require("viewer")
@blp.arguments(EventsQuerySchema, location="query", as_kwargs=True)
@blp.doc(summary="The log in position order, paged with after/limit, filtered")
@blp.alt_response(200, schema=EventsPageSchema, success=True, description="One page of the log")
def list_events(after, limit, type=None, server=None, component=None, since=None, until=None):
    streams = prefix = None
    if server and component:
        streams = [component_stream(server, component)]
    elif server:
        prefix = f"{server}/"
    store = services(current_app).store
    page = store.read_all(
        after,
        limit,
        types=[type] if type else None,
        streams=streams,
        stream_prefix=prefix,
        since=since,
        until=until,
    )
    if component and not server:
        page = [r for r in page if r.stream.endswith(f"/{component}")]
    next_after = page[-1].position if page else after
    return {"events": [event_json(r) for r in page], "next_after": next_after}


def _sse(r: RecordedEvent) -> bytes:
    return (
        f"id: {r.position}\nevent: {r.type}\ndata: ".encode()
        + orjson.dumps(event_json(r))
        + b"\n\n"
    )


KEEP_ALIVE_SECONDS = 15


def _stream_slots(config) -> int:
    """How many live streams one worker serves. In a threaded worker a stream holds a thread:
    never let streams take the threads ingest needs. Under gevent a stream is a greenlet waiting
    on the worker's live tail, and many share a worker."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return config.get("GEVENT_STREAMS", settings.DEFAULTS["GEVENT_STREAMS"])
    return max(1, config.get("THREADS", 8) // 2)


def _tail(app) -> LogTail:
    """The worker's live tail, made on the first stream."""
    with _tail_lock:
        tail = app.extensions.get("clustermon_tail")
        if tail is None:
            tail = app.extensions["clustermon_tail"] = LogTail(
                services(app).store,
                _sse,
                poll_seconds=app.config.get("SSE_POLL_SECONDS", 0.5),
                keep=app.config.get("SSE_TAIL_EVENTS", 2000),
            )
        return tail


_tail_lock = threading.Lock()


class StillValid:
    """For a long stream: is the token that opened it still valid? Asked again every `every`
    seconds, the verifier's cache period, so a revoked token's stream ends within about twice
    that, not at the stream's 5-minute end. A database that cannot answer ends no stream."""

    def __init__(self, app):
        self.verifier = app.extensions["clustermon_tokens"]
        self.token_hash = g.token_hash  # of the header's token, or the ticket's (api/auth.py)
        self.every = self.verifier.ttl
        self.next_check = time.monotonic() + self.every
        self.valid = True

    def __call__(self) -> bool:
        if self.valid and time.monotonic() >= self.next_check:
            try:
                self.valid = self.verifier.verify_hash(self.token_hash) is not None
            except Exception:  # the database's outage is not the token's
                log.warning("live stream: the token could not be checked again", exc_info=True)
            self.next_check = time.monotonic() + self.every
        return self.valid


@blp.route("/events/stream", methods=["GET"])
@blp.doc(responses={"200": EVENT_STREAM})
@blp.doc(
    summary="Live events (Server-Sent Events)",
    description="New events: without `Last-Event-ID` or `?after=` the stream starts at the "
    "head of the log. `id:` is the position; reconnecting with `Last-Event-ID` (or `?after=`, "
    "`0` for the whole log) resumes after it. A comment line is sent every 15 s to keep "
    "proxies from closing it. A stream ends after 5 minutes (clients reconnect with "
    "`Last-Event-ID`). A threaded worker holds at most half its threads in streams, a gevent "
    "worker (`serve` on PostgreSQL) up to "
    "`CLUSTERMON_GEVENT_STREAMS` (default "
    f"{settings.DEFAULTS['GEVENT_STREAMS']}); beyond that the answer is 503 (poll `/events` "
    "then).",
)
@require("viewer", ticket=True)
@blp.arguments(StreamQuerySchema, location="query", as_kwargs=True)
def stream_events(after=None, ticket=None):  # the ticket was redeemed by require
    # The header wins (a reconnecting browser sends it), but may not be malformed either:
    # ASCII digits only (str.isdigit also takes "²"), within a bigint.
    header = request.headers.get("Last-Event-ID")
    if header:
        digits = header.isascii() and header.isdigit() and len(header) <= 19
        if not digits or int(header) > MAX_POSITION:
            raise invalid({"Last-Event-ID": ["must be a position: an integer from 0 to 2^63-1"]})
        after = int(header)
    opening = b"retry: 2000\n\n"
    if after is None:
        # A new subscriber: what happens from now on, not the history. The head it starts
        # from goes out as its first id, so that a client reconnecting before any event
        # arrived resumes there (Last-Event-ID), not at a later head, missing what came between.
        after = services(current_app).store.head_position()
        opening = f"retry: 2000\nid: {after}\n\n".encode()
    tail = _tail(current_app)
    limit_seconds = current_app.config.get("SSE_MAX_SECONDS", 300)
    slots = current_app.extensions.setdefault(
        "clustermon_sse_slots", threading.BoundedSemaphore(_stream_slots(current_app.config))
    )
    if not slots.acquire(blocking=False):
        raise Problem(
            503,
            "this worker serves as many live streams as it can: poll /api/v1/events instead",
            kind="unavailable",
            headers={"Retry-After": "30"},
        )
    still_valid = StillValid(current_app)

    def generate(after: int):
        with tail.subscribed():
            yield opening
            ends = time.monotonic() + limit_seconds
            last_sent = time.monotonic()
            while (now := time.monotonic()) < ends and still_valid():
                if now - last_sent >= KEEP_ALIVE_SECONDS:
                    yield b": keep-alive\n\n"
                    last_sent = now
                wait = min(ends, last_sent + KEEP_ALIVE_SECONDS, now + still_valid.every) - now
                frames = tail.frames_after(after, wait)
                if frames is None:  # older than the tail holds: from the store
                    frames = tail.frames_from_store(after)
                    if not frames:  # the log holds less than the tail (restored?): no spin
                        time.sleep(tail.poll_seconds)
                for position, frame in frames:
                    yield frame
                    after = position
                if frames:
                    last_sent = time.monotonic()

    response = Response(
        stream_with_context(generate(after)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # The slot goes back when the server closes the response, whatever became of it: a HEAD
    # request or a client gone before the first byte never starts the generator, so a
    # `finally` in it would never run and every such request would keep a slot for good.
    response.call_on_close(slots.release)
    return response
