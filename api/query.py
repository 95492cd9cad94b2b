"""Query strings as strict as request bodies: one value per parameter, integers in ASCII digits.

webargs takes the first of repeated values for a single-valued field, so `?type=A&type=B` read
as `?type=A` and answered a filter the client did not ask for; and marshmallow's Integer takes
whatever `int()` does: "+5", " 5", "1_000", "١٢". Both now get a 422 naming the parameter.
"""

from __future__ import annotations

import flask_smorest
from marshmallow import RAISE, Schema, ValidationError, fields
from webargs.flaskparser import FlaskParser

ONCE = "give this parameter once"


class QueryParser(FlaskParser):
    # webargs excludes unknown query parameters whatever the schema says: let the schema say.
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def load_querystring(self, req, schema):
        # None of our query schemas has a multi-valued field: any repetition is ambiguous.
        repeated = {name: [ONCE] for name, values in req.args.lists() if len(values) > 1}
        if repeated:
            raise ValidationError(repeated)
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = QueryParser()


class QueryInteger(fields.Integer):
    """A non-negative integer written in ASCII digits."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class NoQuery(Schema):
    """For endpoints that take no query parameters: any is refused, as an unknown one is
    elsewhere (`@blp.arguments(NoQuery, location="query", as_kwargs=True)`)."""

    class Meta:
        unknown = RAISE
