"""Query strings as strict as request bodies: one value per parameter, integers in ASCII digits.

webargs takes the first of repeated values for a single-valued field, so `?type=A&type=B` read
as `?type=A` and answered a filter the client did not ask for; and marshmallow's Integer takes
whatever `int()` does: "+5", " 5", "1_000", "١٢". Both now get a 422 naming the parameter.
"""

from __future__ import annotations

import flask_smorest
from marshmallow import ValidationError, fields
from webargs.flaskparser import FlaskParser

ONCE = "give this parameter once"


class QueryParser(FlaskParser):
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
