"""Stream tickets: a browser's `EventSource` cannot send an Authorization header.

`POST /api/v1/events/stream/tickets` (viewer) answers a ticket valid for one use within 60 s;
`GET /api/v1/events/stream?ticket=…` then opens the stream without a header, so no long-lived
token ever sits in a URL (where proxies and server logs keep it).

Tickets are stored and redeemed in api/tokens.py (single use across every worker and instance);
api/auth.py accepts them on the routes that say so (`require(..., ticket=True)`).
"""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, g
from marshmallow import fields

from api.auth import require
from api.query import Blueprint, NoQuery
from api.services import services
from api.tokens import TICKET_SECONDS, issue_ticket

blp = Blueprint(
    "stream tickets",
    __name__,
    url_prefix="/api/v1",
    description="One-use tickets for the live stream (browsers' EventSource sends no header)",
)


class StreamTicketSchema(ma.Schema):
    ticket = fields.String(
        metadata={"description": "for `GET /api/v1/events/stream?ticket=…`, once"}
    )
    expires_at = fields.AwareDateTime(
        metadata={"description": "unused after this moment, it opens nothing (at most 60 s)"}
    )
    stream_url = fields.String(
        metadata={"description": "the stream's path with the ticket; add `&after=N` to resume"}
    )


@blp.route("/events/stream/tickets", methods=["POST"])
@blp.doc(
    summary="A one-use ticket for the live stream",
    description="For clients that cannot send an `Authorization` header, such as a browser's "
    "`EventSource`: open `GET /api/v1/events/stream?ticket=…` (plus `after=N` to resume) "
    f"without the header within {TICKET_SECONDS} s. A ticket opens one stream, once; a used "
    "or expired ticket is 401. The stream acts as the token that asked for the ticket and "
    "ends when that token is revoked. When a stream ends (after 5 minutes, or the network), "
    "ask for a new ticket: the browser's own reconnect reuses the URL, whose ticket is spent.",
)
@blp.response(201, StreamTicketSchema)
@require("viewer")
@blp.arguments(NoQuery, location="query", as_kwargs=True)
def create_ticket():
    svc = services(current_app)
    ticket, expires_at = issue_ticket(svc.engine, svc.clock, g.token_hash)
    return {
        "ticket": ticket,
        "expires_at": expires_at,
        "stream_url": f"/api/v1/events/stream?ticket={ticket}",
    }
