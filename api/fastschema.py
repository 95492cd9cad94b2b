"""Plain-Python loaders compiled from marshmallow schemas, for the ingest hot path.

marshmallow spends ~50 us on one heartbeat (field objects, error stores, hooks, validators
composed with `And`); the same checks written as a loop over pre-resolved field specs cost a
few microseconds. A compiled loader answers only "valid: here are the loaded values" or
"not valid" (None): a rejected document is then loaded by marshmallow itself, which words the
errors. So marshmallow stays the one definition of what is valid and of the 422 messages, and
`tests/api/test_fastschema.py` checks with hypothesis that both accept exactly the same JSON
documents and load the same values.

Compilation is deliberately narrow: it knows the field types, validators and options the
heartbeat schemas use and raises `Unsupported` at import for anything else (a new field type,
a `data_key`, a pre/post-load hook...), so the schema cannot drift away from its fast twin
without someone noticing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

import marshmallow as ma
from marshmallow import fields, utils, validate

from api.fields import Fingerprint, HostAddress, Instant
from domain.events import storable_time


class Unsupported(TypeError):
    """The schema uses something the compiler does not reproduce exactly."""


class _Invalid(Exception):
    """Raised inside a compiled loader: the document is not valid (marshmallow will say why)."""


_INVALID = _Invalid()

Loader = Callable[[Any], Any]


def _lowercase_string(value):
    return _string(value).lower()


def _string(value):
    if value.__class__ is str:
        return value
    if isinstance(value, (str, bytes)):  # what fields.String accepts, converted the same way
        try:
            return utils.ensure_text_type(value)
        except UnicodeDecodeError:
            raise _INVALID from None
    raise _INVALID


def _uuid(value):
    # fields.UUID._validated, step by step.
    if isinstance(value, uuid.UUID):
        return value
    try:
        if isinstance(value, bytes) and len(value) == 16:
            return uuid.UUID(bytes=value)
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise _INVALID from None


def _aware_datetime(value):
    # fields.AwareDateTime (ISO format, no default timezone): datetime.fromisoformat, then the
    # offset must be known.
    if not isinstance(value, dt.datetime):
        try:
            value = dt.datetime.fromisoformat(value)
        except (TypeError, AttributeError, ValueError):
            raise _INVALID from None
    if not utils.is_aware(value):
        raise _INVALID
    return value


_INSTANT = re.compile(Instant.PATTERN)


def _instant(value):
    # Instant: its documented pattern first (a str: marshmallow's check, before parsing).
    if not isinstance(value, str) or not _INSTANT.match(value):
        raise _INVALID
    value = _aware_datetime(value)
    if not storable_time(value):
        raise _INVALID
    return value


# Parsing an address costs ~4 us and agents send the same one every time; the parsed objects
# are immutable, so equal texts may share one. (A refused text raises and is not cached.)
_parse_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


def _ip(value):
    try:
        return _parse_ip(utils.ensure_text_type(value))
    except (ValueError, TypeError):
        raise _INVALID from None


def _host_address(value):
    address = _ip(value)
    if getattr(address, "scope_id", None) is not None:
        raise _INVALID
    return address


def _length(validator: validate.Length) -> Callable[[Any], None]:
    low, high, equal = validator.min, validator.max, validator.equal

    def check(value):
        length = len(value)
        if equal is not None:
            if length != equal:
                raise _INVALID
        elif (low is not None and length < low) or (high is not None and length > high):
            raise _INVALID

    return check


def _one_of(validator: validate.OneOf) -> Callable[[Any], None]:
    choices = validator.choices
    with contextlib.suppress(TypeError):  # a set answers `in` as the tuple does, only faster
        choices = frozenset(choices)

    def check(value):
        try:
            if value not in choices:
                raise _INVALID
        except TypeError:
            raise _INVALID from None

    return check


def _regexp(validator: validate.Regexp) -> Callable[[Any], None]:
    match = validator.regex.match  # the validator's own compiled pattern, so `$` means the same

    def check(value):
        if match(value) is None:
            raise _INVALID

    return check


_VALIDATORS: dict[type, Callable[[Any], Callable[[Any], None]]] = {
    validate.Length: _length,
    validate.OneOf: _one_of,
    validate.Regexp: _regexp,
}


def _converter(field: fields.Field, skip: Collection[str]) -> Callable[[Any], Any]:
    kind = type(field)
    if kind is fields.String:
        return _string
    if kind is Fingerprint:
        return _lowercase_string
    if kind is fields.UUID:
        return _uuid
    if kind is fields.AwareDateTime or kind is Instant:
        field = cast(fields.AwareDateTime, field)  # `kind` is that very class
        if field.format not in (None, "iso", "iso8601") or field.default_timezone is not None:
            raise Unsupported(f"AwareDateTime(format={field.format!r}, default_timezone=...)")
        return _aware_datetime if kind is fields.AwareDateTime else _instant
    if kind is fields.IP:
        return _ip
    if kind is HostAddress:
        return _host_address
    if kind is fields.List:
        inner = _field_loader(cast(fields.List, field).inner, skip)

        def load_list(value):
            if value.__class__ is not list:
                raise _INVALID  # marshmallow takes any non-mapping collection; JSON has lists
            return [inner(item) for item in value]

        return load_list
    if kind is fields.Nested:
        field = cast(fields.Nested, field)
        if field.many or field.only or field.exclude or field.unknown is not None:
            raise Unsupported("Nested with many/only/exclude/unknown")
        return _compile(field.schema, skip)
    raise Unsupported(f"field type {kind.__name__}")


def _field_loader(field: fields.Field, skip: Collection[str]) -> Callable[[Any], Any]:
    """Deserialize and validate a present, non-null value (Field.deserialize after its
    missing/None handling)."""
    if field.pre_load or field.post_load:
        raise Unsupported("field-level pre_load/post_load")
    convert = _converter(field, skip)
    checks = []
    for validator in field.validators:
        make = _VALIDATORS.get(type(validator))
        if make is None:
            raise Unsupported(f"validator {type(validator).__name__}")
        checks.append(make(validator))
    if not checks:
        return convert

    def load(value):
        value = convert(value)
        for check in checks:
            check(value)
        return value

    return load


def _compile(schema: ma.Schema, skip_hooks: Collection[str]) -> Callable[[Any], dict]:
    if schema.unknown != ma.RAISE:
        raise Unsupported("only unknown=RAISE schemas are compiled")
    hooks = {hook[0] for hooks_of_kind in schema._hooks.values() for hook in hooks_of_kind}
    if hooks - set(skip_hooks):
        raise Unsupported(f"schema hooks {sorted(hooks - set(skip_hooks))}")
    specs = []
    for name, field in schema.load_fields.items():
        if field.data_key is not None or field.attribute is not None:
            raise Unsupported(f"{name}: data_key/attribute")
        load_value = _field_loader(field, skip_hooks)
        specs.append((name, field.required, field.allow_none, field.load_default, load_value))
    names = frozenset(name for name, *_ in specs)
    missing = ma.missing

    def load(data):
        if not isinstance(data, Mapping) or not data.keys() <= names:
            raise _INVALID  # not an object, or unknown fields
        out = {}
        get = data.get
        for name, required, allow_none, default, load_value in specs:
            value = get(name, missing)
            if value is missing:
                if required:
                    raise _INVALID
                if default is not missing:
                    out[name] = default() if callable(default) else default
            elif value is None:
                if not allow_none:
                    raise _INVALID
                out[name] = None
            else:
                out[name] = load_value(value)
        return out

    return load


def compile_loader(schema: ma.Schema, *, skip_hooks: Collection[str] = ()) -> Loader:
    """`loader(data)` -> what `schema.load(data)` returns when it accepts `data`, else None.

    `skip_hooks`: names of the schema's own hooks (e.g. a `validates_schema`) that the caller
    knows cannot change the outcome for documents the compiled checks accept."""
    load = _compile(schema, skip_hooks)

    def loader(data):
        try:
            return load(data)
        except _Invalid:
            return None

    return loader
