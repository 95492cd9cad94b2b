"""Channels and silences in the fold, their decisions, and channel URLs sealed at rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import decisions
from domain.events import ChannelConfigured, ChannelRemoved, SilenceCreated, SilenceEnded
from domain.state import ClusterState, fold
from notify import secrets
from projections.readmodel import snapshots
from tests.unit.test_targets_fold import _log

T = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _channel(**overrides) -> ChannelConfigured:
    fields = {
        "name": "ops",
        "kind": "webhook",
        "target": "https://hooks.example/***",
        "url_encrypted": secrets.seal("https://hooks.example/T0K3N", "k"),
        "on": ["stale", "recovered"],
    }
    return ChannelConfigured(**{**fields, **overrides})


def test_channels_and_silences_fold_and_survive_snapshots_and_the_dict_form():
    configured = _channel(servers=["web01"], min_outage_seconds=60)
    silence = SilenceCreated(id="s1", starts_at=T, ends_at=T + HOUR, servers=["web01"])
    state = fold(_log((configured, "a"), (silence, "a")))
    channel = state.channels["ops"]
    assert (channel.on, channel.servers, channel.min_outage_seconds) == (
        ["stale", "recovered"],
        ["web01"],
        60,
    )
    assert state.silences["s1"].active(T) and not state.silences["s1"].active(T + HOUR)
    for copy in (
        snapshots.decode(snapshots.encode(state)),
        ClusterState.from_dict(snapshots.orjson.loads(snapshots.orjson.dumps(state.to_dict()))),
    ):
        assert copy.channels == state.channels and copy.silences == state.silences
    state = fold(
        _log(
            (configured, "a"),
            (silence, "a"),
            (ChannelRemoved(name="ops"), "a"),
            (SilenceEnded(id="s1", at=T + HOUR / 2), "a"),
        )
    )
    assert state.channels == {}
    assert state.silences["s1"].ends_at == T + HOUR / 2 and state.silences["s1"].ended_early


def test_a_silence_matches_its_servers_and_components_only():
    silence = fold(
        _log((SilenceCreated(id="s", starts_at=T, ends_at=T + HOUR, components=["web"]), "a"))
    ).silences["s"]
    assert silence.matches("web01", "web") and not silence.matches("web01", "service")
    scoped = fold(
        _log((SilenceCreated(id="s", starts_at=T, ends_at=T + HOUR, servers=["web01"]), "a"))
    ).silences["s"]
    assert scoped.matches("web01", "service") and not scoped.matches("web02", "service")
    assert not scoped.matches(None, None)  # a cluster-wide message is not one server's


def test_channel_decisions_refuse_unknown_triggers_and_record_only_changes():
    with pytest.raises(decisions.InvalidConfiguration) as refused:
        decisions.channel_change(None, _channel(on=["stale", "lunch"]))
    assert "on" in refused.value.errors
    configured = _channel()
    current = fold(_log((configured, "a"))).channels["ops"]
    assert decisions.channel_change(current, configured) is None
    assert decisions.channel_change(current, _channel(on=["stale"])) is not None
    with pytest.raises(decisions.NotAChannel):
        decisions.channel_removal("nope", None)


def test_a_silence_must_end_after_it_starts_and_in_the_future():
    with pytest.raises(decisions.InvalidConfiguration):
        decisions.silence(SilenceCreated(id="s", starts_at=T, ends_at=T), T - HOUR)
    with pytest.raises(decisions.InvalidConfiguration):
        decisions.silence(SilenceCreated(id="s", starts_at=T - HOUR, ends_at=T), T)
    with pytest.raises(decisions.NotASilence):
        decisions.silence_end("s", None, T)


def test_a_sealed_url_opens_only_with_its_secret_key_and_holds_no_clear_text():
    sealed = secrets.seal("slack://TokenA/TokenB/TokenC", "the key")
    assert "TokenA" not in sealed
    assert secrets.unseal(sealed, "the key") == "slack://TokenA/TokenB/TokenC"
    with pytest.raises(secrets.Unreadable):
        secrets.unseal(sealed, "another key")
