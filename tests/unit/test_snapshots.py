"""Snapshot encoding: what is decoded is the state that was encoded, in every stored format."""

import zlib
from dataclasses import fields
from datetime import timedelta

import orjson

from domain.state import fold
from projections.readmodel import snapshots
from tests.unit.projection_helpers import T0, Log


def _state():
    log = Log()
    log.heartbeat("srv1", "web", message="hi", ip="10.0.0.1")
    log.heartbeat("srv1", "service", os="Ubuntu")  # the same stamp as the web beat
    log.heartbeat("srv2", "service", status="error", encryption_key_fingerprint=None)
    log.advance(seconds=1, microseconds=5)
    log.heartbeat("srv3", "web")
    log.configure(stale_timeout_seconds=120)
    log.advance(minutes=10)
    log.timed_out("srv1", "web", T0 + timedelta(minutes=2))
    log.remove("srv3", "web")
    log.resumed(T0)
    return fold(log.events)


def test_a_snapshot_decodes_to_the_state_it_was_taken_of():
    state = _state()
    decoded = snapshots.decode(snapshots.encode(state))
    assert decoded == state
    # The same servers and components in the same order (the fold's iteration order).
    assert list(decoded.servers) == list(state.servers)
    assert [(c.server, c.name) for c in decoded.components()] == [
        (c.server, c.name) for c in state.components()
    ]


def test_snapshots_stored_in_the_previous_formats_still_decode():
    state = _state()
    rows_by_server = {  # format 2: each server with its components as rows
        "format": 2,
        "configuration": {
            f.name: getattr(state.configuration, f.name) for f in fields(state.configuration)
        },
        "position": state.position,
        "recorded_at": state.recorded_at,
        "monitor_resumed_at": state.monitor_resumed_at,
        "servers": [
            [
                s.name,
                s.os,
                s.os_version,
                s.ip,
                [
                    [getattr(c, name) for name in snapshots._COMPONENT_FIELDS]
                    for c in s.components.values()
                ],
            ]
            for s in state.servers.values()
        ],
    }
    assert snapshots.decode(zlib.compress(orjson.dumps(rows_by_server))) == state
    assert snapshots.decode(zlib.compress(orjson.dumps(state.to_dict()))) == state  # format 1
