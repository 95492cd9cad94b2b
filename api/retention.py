"""Retention over HTTP (API.md "Retention"): what the log still holds and where the older
events went. (A read into archived history answers 410: api/problems.py `archived`.)"""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from marshmallow import fields

from api.auth import require
from api.query import Blueprint, NoQuery
from api.services import services
from eventstore import retention
from projections.readmodel.boundary import archives

blp = Blueprint("retention", __name__, url_prefix="/api/v1", description="Retention")


class ArchiveSchema(ma.Schema):
    first_position = fields.Integer(required=True)
    last_position = fields.Integer(required=True)
    before = fields.AwareDateTime(
        required=True, metadata={"description": "every event recorded before it is archived"}
    )
    events = fields.Integer(required=True, metadata={"description": "how many events it holds"})
    path = fields.String(
        required=True, metadata={"description": "where the archiver wrote it (its directory)"}
    )


class RetentionSchema(ma.Schema):
    oldest_position = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "of the oldest event kept in the database; null: none"},
    )
    oldest_time = fields.AwareDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "the recorded_at of that event; null: none"},
    )
    boundary = fields.AwareDateTime(
        required=True,
        allow_none=True,
        metadata={
            "description": "time travel (`GET /cluster?at=`) answers from here on; before it, "
            "410 naming the archive. Null: nothing was archived"
        },
    )
    archives = fields.List(
        fields.Nested(ArchiveSchema),
        required=True,
        metadata={"description": "the archives whose events left the database, oldest first"},
    )


@blp.route("/retention", methods=["GET"])
@blp.doc(
    summary="What the log holds and where older events went",
    description="The oldest event kept in the database and the archives (`clustermon "
    "archive`) that hold the older ones; `clustermon restore` brings an archive back.",
)
@blp.response(200, RetentionSchema)
@require("viewer")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def get_retention():
    store = services(current_app).store
    done = archives(store)
    return {
        "oldest_position": retention.oldest_position(store.engine),
        "oldest_time": retention.oldest_recorded_at(store.engine),
        "boundary": done[-1].before if done else None,
        "archives": done,
    }
