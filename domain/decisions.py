"""The decisions: commands and facts in, events out, with no I/O (the Decider shape).

The write side (eventstore/commands.py) reads the facts a decision needs under the store's
append lock, calls these, and appends what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import rules
from domain.events import (
    COMPONENTS,
    TRIGGERS,
    ChannelConfigured,
    ChannelRemoved,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    Event,
    HeartbeatRecorded,
    SilenceCreated,
    SilenceEnded,
    TargetConfigured,
    TargetRemoved,
)
from domain.state import ChannelState, ComponentState, Configuration, SilenceState, TargetState

INGEST_DETECTOR = "ingest"


class NotInCluster(LookupError):
    pass


class NotATarget(LookupError):
    pass


class NotAChannel(LookupError):
    pass


class NotASilence(LookupError):
    pass


class InvalidConfiguration(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("invalid configuration")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Tail:
    """What a heartbeat decision needs of a stream's last event (no payload decoding, except
    the expiry of a timeout)."""

    position: int
    version: int
    type: str
    recorded_at: datetime
    expired_at: datetime | None


@dataclass(frozen=True, slots=True)
class Policy:
    """What decides deadlines: the configuration in force and the last monitor resumption."""

    configuration: Configuration
    monitor_resumed_at: datetime | None
    versions: tuple[int, int]  # (cluster stream version, monitor stream version)


def outage_events(
    beat: HeartbeatRecorded, tail: Tail | None, policy: Policy, now: datetime
) -> list[Event]:
    """What a new heartbeat ends, to be appended before it: after a recorded timeout, the
    recovery; after a deadline that passed unnoticed (no sweep ran yet), the timeout stamped
    with its logical expiry and the recovery, so the log shows the outage whoever saw it first."""
    if tail is None:
        return []
    stale_since = None
    out: list[Event] = []
    if tail.type == ComponentTimedOut.type:
        stale_since = tail.expired_at
    elif tail.type == HeartbeatRecorded.type:
        probe = ComponentState(beat.server, beat.component, last_heartbeat_at=tail.recorded_at)
        expiry = rules.deadline(probe, policy.configuration, policy.monitor_resumed_at)
        assert expiry is not None  # the probe has a last heartbeat
        if now > expiry:
            stale_since = expiry
            out.append(
                ComponentTimedOut(
                    server=beat.server,
                    component=beat.component,
                    expired_at=expiry,
                    detected_at=now,
                    timeout_seconds=rules.timeout_seconds(beat.component, policy.configuration),
                    configuration_version=policy.configuration.version,
                    last_heartbeat_position=tail.position,
                    detector=INGEST_DETECTOR,
                )
            )
    if stale_since is None:
        return []
    out.append(
        ComponentRecovered(
            server=beat.server,
            component=beat.component,
            stale_since=stale_since,
            recovered_at=now,
            outage_seconds=max(0.0, (now - stale_since).total_seconds()),
        )
    )
    return out


def configuration_change(
    current: Configuration, changes: Mapping[str, Any]
) -> ConfigurationChanged | None:
    """The event a partial update records: only the settings it really changes (None: nothing
    changes). Raises InvalidConfiguration when the merged configuration breaks a rule."""
    errors = validate_configuration({**current.settings(), **changes}, set(changes))
    if errors:
        raise InvalidConfiguration(errors)
    effective = {k: v for k, v in changes.items() if getattr(current, k) != v}
    return ConfigurationChanged(changes=effective) if effective else None


def removal(server: str, component: str, tail: Tail | None) -> ComponentRemoved:
    """A manual removal, refused for a component that is not in the cluster."""
    if tail is None or tail.type == ComponentRemoved.type:
        raise NotInCluster(f"{component} component of {server} is not in the cluster")
    return ComponentRemoved(server=server, component=component)


def current_since(policy: Policy, now: datetime) -> dict[str, datetime | None]:
    """Per component name, the oldest last heartbeat that is still current at `now` under
    `policy` (None: any, a monitor resumption gives every component its full timeout). The
    inverse of `rules.deadline`: current iff now <= max(last, resumed) + timeout."""
    since = {}
    for component in COMPONENTS:
        timeout = timedelta(seconds=rules.timeout_seconds(component, policy.configuration))
        resumed = policy.monitor_resumed_at
        since[component] = (
            None if resumed is not None and now <= resumed + timeout else now - timeout
        )
    return since


def validate_configuration(merged: Mapping[str, Any], changed: set[str]) -> dict[str, list[str]]:
    """Cross-field rules (per-field ranges are in the schema). The product docs discourage a
    stale timeout close to the heartbeat frequency: one late heartbeat would mark a healthy
    service stale, so we require at least two heartbeat periods."""
    errors: dict[str, list[str]] = {}
    frequency = merged["heartbeat_frequency_seconds"]
    stale = merged["stale_timeout_seconds"]
    web = merged["web_stale_timeout_seconds"]
    if stale < 2 * frequency:
        field = (
            "stale_timeout_seconds"
            if "stale_timeout_seconds" in changed
            else "heartbeat_frequency_seconds"
        )
        errors[field] = [
            f"the stale timeout ({stale} s) must be at least two heartbeat periods"
            f" ({2 * frequency} s), or one late heartbeat marks a healthy service stale"
        ]
    if web < frequency:
        errors.setdefault("web_stale_timeout_seconds", []).append(
            f"the web window ({web} s) must not be shorter than the heartbeat frequency"
            f" ({frequency} s)"
        )
    return errors


def target_change(
    server: str, current: TargetState | None, requested: Mapping[str, Any]
) -> TargetConfigured | None:
    """The event that creates or changes a target (None: it already is exactly that). Settings
    not named keep their current value, or the default for a new target. Raises
    InvalidConfiguration when the timeout would not end before the next poll is due."""
    base = current.settings() if current is not None else TargetState(server, "").settings()
    merged = {**base, **requested}
    errors: dict[str, list[str]] = {}
    if not merged["url"]:
        errors["url"] = ["a new target needs the product's base URL"]
    if merged["timeout_seconds"] >= merged["interval_seconds"]:
        field = "timeout_seconds" if "timeout_seconds" in requested else "interval_seconds"
        errors[field] = [
            f"the timeout ({merged['timeout_seconds']} s) must be shorter than the interval"
            f" ({merged['interval_seconds']} s), or polls of one target would overlap"
        ]
    if errors:
        raise InvalidConfiguration(errors)
    if current is not None and merged == base:
        return None
    return TargetConfigured(server=server, **merged)


def target_removal(server: str, current: TargetState | None) -> TargetRemoved:
    if current is None:
        raise NotATarget(f"{server} is not a polled target")
    return TargetRemoved(server=server)


def channel_change(
    current: ChannelState | None, configured: ChannelConfigured
) -> ChannelConfigured | None:
    """The event that creates or changes a channel (None: it already is exactly that; the URL
    compares by its sealed form, which differs at every seal, so a PUT with a URL always
    records). Raises InvalidConfiguration on an unknown trigger or a negative grace."""
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(configured.on) - set(TRIGGERS))
    if unknown:
        errors["on"] = [f"unknown triggers {unknown}: choose from {list(TRIGGERS)}"]
    if configured.min_outage_seconds < 0:
        errors["min_outage_seconds"] = ["must be 0 or more"]
    if errors:
        raise InvalidConfiguration(errors)
    if current is not None and current.url_encrypted == configured.url_encrypted:
        same = (
            current.kind,
            current.target,
            current.on,
            current.servers,
            current.min_outage_seconds,
            current.enabled,
        ) == (
            configured.kind,
            configured.target,
            list(configured.on),
            configured.servers,
            configured.min_outage_seconds,
            configured.enabled,
        )
        if same:
            return None
    return configured


def channel_removal(name: str, current: ChannelState | None) -> ChannelRemoved:
    if current is None:
        raise NotAChannel(f"there is no notification channel named {name!r}")
    return ChannelRemoved(name=name)


def silence(created: SilenceCreated, now: datetime) -> SilenceCreated:
    """A new silence, refused (InvalidConfiguration) when it would end before it starts or
    has already ended."""
    errors: dict[str, list[str]] = {}
    if created.ends_at <= created.starts_at:
        errors["ends_at"] = ["must be later than starts_at"]
    elif created.ends_at <= now:
        errors["ends_at"] = ["must be in the future: this silence would never be active"]
    if errors:
        raise InvalidConfiguration(errors)
    return created


def silence_end(silence_id: str, current: SilenceState | None, now: datetime) -> SilenceEnded:
    """Ending a silence early (ending one already over is refused: nothing would change)."""
    if current is None or current.ends_at <= now:
        raise NotASilence(f"there is no active or future silence {silence_id!r}")
    return SilenceEnded(id=silence_id, at=now)
