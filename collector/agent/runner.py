"""The agent's loop: every heartbeat period, read the local /health, make the `web` and
`service` heartbeats with this machine's facts, put them in the spool; deliver the spool when
clustermon is there, back off when it is not.

Time comes in from outside (`clock` for `sent_at`, `monotonic` and `wait` for the schedule), so
tests run periods without sleeping.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from collector import health
from collector.agent import facts, keyfile
from collector.agent.sender import ClustermonApi, Delivery
from collector.agent.spool import Spool

log = logging.getLogger("clustermon.agent")

DEFAULT_PERIOD = 30  # seconds, until the cluster's own is read (API.md default)
PERIOD_REFRESH_SECONDS = 300.0  # how often the cluster's heartbeat period is read again
WAIT_SLICE = 0.5  # longest single wait: Ctrl-C on Windows is seen between waits


@dataclass(frozen=True)
class Settings:
    url: str  # clustermon's base address
    server: str  # the name this machine reports as
    health_url: str  # the local product's /health
    config_file: Path | None  # where the EncryptionKey is; None: the documented places
    period: int | None = None  # fixed heartbeat period; None: read it from clustermon


class Agent:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        api: ClustermonApi,
        delivery: Delivery,
        health_client: httpx.Client,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float],
        find_key: Callable[[Path | None], keyfile.Fingerprint] = keyfile.find,
        os_facts: Callable[[], tuple[str | None, str | None]] = facts.os_facts,
        route_ip: Callable[[str], str | None] = facts.route_ip,
    ):
        self.settings = settings
        self.spool = spool
        self.api = api
        self.delivery = delivery
        self.health_client = health_client
        self.clock = clock
        self.monotonic = monotonic
        self._find_key = find_key
        self._os_facts = os_facts
        self._route_ip = route_ip
        self.period = settings.period or DEFAULT_PERIOD
        self.made = 0  # heartbeats made since the start
        self._period_read_at: float | None = None
        self._next_beat: float | None = None
        self._next_delivery = 0.0
        self._health_problem: str | None = None
        self._key_said: str | None = None

    # -- one period -------------------------------------------------------------------------

    def refresh_period(self) -> None:
        """Read the cluster's heartbeat period at the start and every few minutes (unless
        --period fixed it); keep the last one known when clustermon cannot say."""
        if self.settings.period is not None:
            return
        now = self.monotonic()
        if self._period_read_at is not None and now - self._period_read_at < PERIOD_REFRESH_SECONDS:
            return
        self._period_read_at = now
        period = self.api.heartbeat_period()
        if period is not None and period != self.period:
            log.info("heartbeat period: %d s (the cluster's configuration)", period)
            self.period = period

    def make_heartbeats(self) -> list[dict]:
        """This period's heartbeats, or none when the local /health gave no health document
        (then both components go stale in clustermon by the normal rules)."""
        try:
            document = facts.read_health(self.health_client, self.settings.health_url)
        except facts.HealthUnavailable as exc:
            if str(exc) != self._health_problem:
                log.warning("no heartbeats while the local /health fails: %s", exc)
            self._health_problem = str(exc)
            return []
        if self._health_problem is not None:
            log.info("the local /health answers again")
            self._health_problem = None
        fingerprint = self._fingerprint()
        os_name, os_version = self._os_facts()
        ip = self._route_ip(self.settings.url)
        beats = health.heartbeats(document, self.settings.server)
        for beat in beats:
            beat.update(
                event_id=str(uuid.uuid4()),  # so that a retried delivery is recorded once
                sent_at=self.clock().isoformat(),  # when made, not when delivered
                os=os_name,
                os_version=os_version,
                ip=ip,
                encryption_key_fingerprint=fingerprint,
            )
        # Absent rather than null: shorter spool lines, same meaning to the API.
        return [{k: v for k, v in beat.items() if v is not None} for beat in beats]

    def beat(self) -> int:
        """Make this period's heartbeats and put them in the spool (durably)."""
        beats = self.make_heartbeats()
        if beats:
            try:
                self.spool.append(beats)
            except OSError as exc:  # disk full, permissions: this period's heartbeats are lost
                log.error(
                    "heartbeats lost: the spool %s cannot be written: %s", self.spool.path, exc
                )
                return 0
            self.made += len(beats)
            for beat in beats:
                log.debug(
                    "spooled heartbeat %s (%s/%s, sent_at %s)",
                    beat["event_id"],
                    beat["server"],
                    beat["component"],
                    beat["sent_at"],
                )
        return len(beats)

    def _fingerprint(self) -> str | None:
        """Read again every period: a key changed on disk shows at the next heartbeat. What is
        logged changes only when the outcome does (never the key)."""
        try:
            found = self._find_key(self.settings.config_file)
        except keyfile.KeyNotFound as exc:
            said = f"no encryption key fingerprint is sent: {exc}"
            if said != self._key_said:
                log.error("%s", said)
            self._key_said = said
            return None
        said = f"encryption key fingerprint from {found.source}"
        if said != self._key_said:
            log.info("%s", said)
        self._key_said = said
        return found.value

    # -- the loop ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """One cycle (for cron and tests): beat, then one delivery of the whole spool. 0 when
        nothing is left in the spool, 75 (EX_TEMPFAIL) when heartbeats stay for later.
        Raises Refused on 401/403."""
        self.beat()
        self.delivery.run()
        return 0 if not len(self.spool) else 75

    def run(self, stopping: Callable[[], bool], wait: Callable[[float], object]) -> None:
        """Until `stopping()`: beat every period, deliver whenever the spool holds heartbeats
        and no backoff is running. `wait(seconds)` sleeps (returning early when stopping).
        Raises Refused on 401/403."""
        while not stopping():
            now = self.monotonic()
            if self._next_beat is None or now >= self._next_beat:
                self.refresh_period()
                self.beat()
                self._next_beat = (
                    now if self._next_beat is None else self._next_beat
                ) + self.period
                if self._next_beat <= now:  # fell behind (a long delivery): no catching up
                    self._next_beat = now + self.period
            now = self.monotonic()
            if len(self.spool) and now >= self._next_delivery and not stopping():
                retry_in = self.delivery.run(stopping)
                now = self.monotonic()
                self._next_delivery = now + retry_in if retry_in is not None else 0.0
            due = self._next_beat
            if len(self.spool) and self._next_delivery > now:
                due = min(due, self._next_delivery)
            wait(min(max(due - now, 0.0), WAIT_SLICE))
