"""POST /api/v1/heartbeats — one heartbeat or a batch of up to 1,000."""

from __future__ import annotations

import orjson
from flask import Response, current_app, g, request
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from api import new_servers
from api.auth import require, require_servers
from api.fastschema import compile_loader
from api.ids import new_ids
from api.problems import Problem, invalid
from api.query import Blueprint, NoQuery
from api.schemas import (
    RAW_KEY_FIELDS,
    HeartbeatBatchSchema,
    HeartbeatSchema,
    IngestResultSchema,
)
from api.tokens import Principal
from domain.events import HeartbeatRecorded
from eventstore.db import unavailable_reason
from eventstore.group_commit import GroupCommitter
from eventstore.store import ConcurrencyError, NewEvent

blp = Blueprint("heartbeats", __name__, url_prefix="/api/v1", description="Heartbeat ingest")

_single = HeartbeatSchema()
_batch = HeartbeatBatchSchema()
# The hot path: the same schemas compiled to plain checks (api/fastschema.py). Their one hook,
# `refuse_raw_keys`, only words the error for keys that are not fields, which the compiled
# loader refuses anyway (unknown=RAISE); marshmallow then says why.
assert not set(RAW_KEY_FIELDS) & set(_single.load_fields)
_fast_single = compile_loader(_single, skip_hooks=("refuse_raw_keys",))
_fast_batch = compile_loader(_batch, skip_hooks=("refuse_raw_keys",))


def json_body():
    """The request's JSON document, or a 4xx problem (wrong media type, bad JSON)."""
    if not request.is_json:
        raise Problem(415, "send the body as application/json", kind="unsupported-media-type")
    data = request.get_data(cache=True)
    # A chunked body stops at the limit without a word (werkzeug), and the truncated JSON would
    # be a 400: a byte beyond the limit makes it the 413 it is.
    cut = request.content_length is None and len(data) == request.max_content_length
    if cut and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", kind="bad-json") from None


def compiled_load(body) -> list[dict] | None:
    """The loaded heartbeats of a valid request body (a heartbeat or {"heartbeats": [...]}),
    or None: the compiled loaders only say yes or no."""
    if not isinstance(body, dict):
        return None
    if "heartbeats" in body:
        loaded = _fast_batch(body)
        return None if loaded is None else loaded["heartbeats"]
    loaded = _fast_single(body)
    return None if loaded is None else [loaded]


def load_heartbeats(body) -> list[dict]:
    """The loaded heartbeats of a request body, or a 422 with marshmallow's per-field errors.
    Valid bodies never reach marshmallow."""
    loaded = compiled_load(body)
    if loaded is not None:
        return loaded
    if not isinstance(body, dict):
        raise invalid({"_schema": ['expected a heartbeat object or {"heartbeats": [...]}']})
    schema = _batch if "heartbeats" in body else _single
    try:
        loaded = schema.load(body)
    except ValidationError as err:
        raise invalid(err.messages) from None
    # Only reached if the compiled loader refused what marshmallow accepts (the property test
    # says it does not): marshmallow's answer stands.
    return loaded["heartbeats"] if schema is _batch else [loaded]


def request_metadata() -> dict:
    return actor_metadata(g.principal, request.remote_addr, request.headers.get("X-Request-ID"))


MAX_REQUEST_ID = 200  # characters of X-Request-ID kept with each event


def actor_metadata(principal: Principal, source: str | None, request_id: str | None) -> dict:
    """What every event records about who sent it."""
    return {
        "actor": principal.name,
        "role": principal.role,
        "source": source,
        "correlation_id": _correlation_id(request_id),
    }


def _correlation_id(header: str | None) -> str | None:
    """X-Request-ID as sent: WSGI hands header bytes over as Latin-1, so UTF-8 is decoded again
    (an unreadable byte becomes U+FFFD, NUL is dropped: PostgreSQL's JSON refuses it), and only
    the first MAX_REQUEST_ID characters are kept: it is copied into every event."""
    if not header:
        return None
    text = header.encode("latin-1", "replace").decode("utf-8", "replace")
    return text.replace("\x00", "")[:MAX_REQUEST_ID] or None


@blp.route("/heartbeats", methods=["POST"])
@blp.doc(
    summary="Record heartbeats",
    description='One heartbeat object, or `{"heartbeats": [...]}` with 1 to 1,000 of them. '
    "The answer comes after the commit: a 202 means durable. A repeated `event_id` is counted "
    "as a duplicate and not stored again. A batch is all-or-nothing: one invalid heartbeat "
    "rejects the whole batch with per-item errors; so does a server outside the token's "
    "binding (403, naming the servers), and more servers the cluster never heard of than "
    "the hourly cap has room for (429 with Retry-After; known servers are never limited).",
    requestBody={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Heartbeat"},
                        {"$ref": "#/components/schemas/HeartbeatBatch"},
                    ]
                }
            }
        },
    },
)
@blp.response(202, IngestResultSchema)
@require("agent")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def post_heartbeats():
    items = load_heartbeats(json_body())
    admit(g.principal, items, new_servers.of(current_app))
    body = record(current_app.extensions["clustermon_ingest"], items, request_metadata())
    return Response(body, status=202, mimetype="application/json")


def admit(principal: Principal, items: list[dict], cap: new_servers.NewServerCap) -> None:
    """Refuse the whole batch before anything is recorded: 403 if it names a server outside the
    token's binding, 429 if it brings more new servers than the hour has room for. Shared by
    the view and api/fastpath.py; for a batch of known servers and an unbound token, no query."""
    servers = {item["server"] for item in items}
    require_servers(principal, servers, "send heartbeats")
    cap.admit(servers)


def record(committer: GroupCommitter, items: list[dict], metadata: dict) -> bytes:
    """Record loaded heartbeats through the group committer; the 202 body once committed, or a
    503 problem (nothing acknowledged). Shared by this view and api/fastpath.py."""
    own_ids = new_ids(len(items))  # for those that bring none; no system call (api/ids.py)
    beats, client_ids = [], []
    for item, own_id in zip(items, own_ids, strict=True):
        event_id = item.pop("event_id", None)
        if event_id:
            client_ids.append(event_id)
        else:
            event_id = own_id
        if item.get("ip") is not None:
            item["ip"] = str(item["ip"])
        beats.append(
            NewEvent(
                HeartbeatRecorded(**item),
                event_id=event_id,
                occurred_at=item["sent_at"],
                metadata=metadata,
            )
        )
    try:
        receipt = committer.submit(beats, client_ids)
    except DataError as exc:  # a value the database cannot store: retrying will not help
        diag = getattr(exc.orig, "diag", None)  # PostgreSQL's own words, not our statement
        reason = getattr(diag, "message_primary", None) or exc.orig.__class__.__name__
        raise Problem(
            422, f"the database refused a value of these heartbeats: {reason}", kind="validation"
        ) from None
    except Exception as exc:
        # The database away (whichever layer raised it: eventstore.db knows), the commit not
        # done in time, a conflict: nothing of this request is acknowledged, so the agent
        # sends it again (with its event_ids, a retry is stored once).
        reason = unavailable_reason(exc)
        if reason is None and not isinstance(
            exc, SQLAlchemyError | TimeoutError | ConcurrencyError
        ):
            raise
        raise Problem(
            503,
            f"not recorded, retry later ({reason or exc.__class__.__name__})",
            kind="unavailable",
            headers={"Retry-After": "1"},
        ) from None
    # Serialized here rather than by flask-smorest's IngestResultSchema dump (which documents
    # the same three fields): one orjson call instead of a schema dump + jsonify.
    return orjson.dumps(
        {
            "accepted": receipt.accepted,
            "duplicates": receipt.duplicates,
            "last_position": receipt.last_position,
        }
    )
