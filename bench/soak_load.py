"""The soak's load generator: every client of the deployment, played by one asyncio process.

- N simulated servers, each posting its two heartbeats (web + service) in one request every
  `period` seconds. Server i's first beat is at phase vdc(i) x period (the van der Corput
  sequence), so the beats are spread evenly over the period at any N, and stay so when the
  ramp adds servers.
- `dashboards` clients reading `GET /api/v1/cluster` every `dashboard_every` seconds, spread.
- One time-travel read (`GET /api/v1/cluster?at=`) every `time_travel_every` seconds, at a
  random instant of the run so far.
- `subscribers` live event streams (SSE), resumed with Last-Event-ID when the server ends one.
- Victims: from one period on, every `victim_every` seconds one server stops sending its
  Service heartbeat; when its timeout shows on a stream it resumes (a recovery). How long the
  timeout took from its logical expiry to reaching each stream is the user-visible detection
  delay. A timeout of any other component is a false alarm, counted as `unexpected`.

Requests are open-loop: each is sent when it is due, whatever earlier ones are doing, so a
slow server shows as latency instead of silently lowering the load. How late the generator
itself sent them (`lateness`) tells whether it kept up.

The orchestrator (bench/soak.py) drives it over a pipe: ("servers", N) changes N, ("sample",
None) answers the statistics gathered since the previous sample, ("stop", None) stops and
answers the last ones.
"""

from __future__ import annotations

import array
import asyncio
import heapq
import itertools
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import orjson

from bench.soak_http import Endpoint, SseFrame, fetch, request_bytes, sse_frames

KINDS = ("heartbeat", "cluster", "cluster_at")
PAGE = "/api/v1/cluster"


@dataclass(frozen=True)
class LoadPlan:
    urls: tuple[str, ...]  # the serve instances; requests go round-robin, as a balancer would
    agent: str
    viewer: str
    servers: int
    period: float = 30.0
    dashboards: int = 50
    dashboard_every: float = 5.0
    subscribers: int = 20
    time_travel_every: float = 1.0
    victim_every: float = 10.0
    stale_timeout: float = 60.0
    request_timeout: float = 30.0
    max_in_flight: int = 5000  # beyond this the server is hopelessly behind: count, do not send


def server_name(index: int) -> str:
    return f"soak-{index:05d}"


def vdc(i: int) -> float:
    """The i-th element of the base-2 van der Corput sequence: 0, 1/2, 1/4, 3/4, 1/8, ..."""
    result, denominator = 0.0, 1.0
    while i:
        denominator *= 2
        i, bit = divmod(i, 2)
        result += bit / denominator
    return result


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class Interval:
    """What happened since the previous sample."""

    latency: dict[str, array.array] = field(
        default_factory=lambda: {k: array.array("d") for k in KINDS}
    )
    errors: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    lateness: array.array = field(default_factory=lambda: array.array("d"))
    dropped: int = 0
    delivery_lag: array.array = field(default_factory=lambda: array.array("d"))
    events: int = 0  # events that reached stream 0
    seen: array.array = field(default_factory=lambda: array.array("d"))  # expiry -> on a stream
    unexpected: list[str] = field(default_factory=list)
    detectors: Counter = field(default_factory=Counter)
    recoveries: int = 0
    missed: int = 0
    sse_refused: int = 0
    sse_errors: Counter = field(default_factory=Counter)
    sse_reconnects: int = 0

    def as_dict(self, **extra) -> dict:
        return {
            "latency": {k: v.tolist() for k, v in self.latency.items()},
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "lateness": self.lateness.tolist(),
            "dropped": self.dropped,
            "delivery_lag": self.delivery_lag.tolist(),
            "events": self.events,
            "seen": self.seen.tolist(),
            "unexpected": self.unexpected,
            "detectors": dict(self.detectors),
            "recoveries": self.recoveries,
            "missed": self.missed,
            "sse_refused": self.sse_refused,
            "sse_errors": dict(self.sse_errors),
            "sse_reconnects": self.sse_reconnects,
            **extra,
        }


class Load:
    def __init__(self, plan: LoadPlan, control: Connection):
        self.plan = plan
        self.control = control
        self.endpoints = [Endpoint.of(url) for url in plan.urls]
        self.turn = itertools.count()
        self.interval = Interval()
        self.servers = 0
        self.due: list[tuple[float, int]] = []  # heap of (next beat, server index)
        self.victims: dict[int, float] = {}  # server index -> when it stopped (loop time)
        self.timeouts: dict[str, bool] = {}  # position -> whether it was a victim's
        self.requests: set[asyncio.Task] = set()
        self.streams_open = 0
        self.loop = asyncio.get_running_loop()
        self.t0 = self.interval_started = self.loop.time()
        self.started_wall = time.time()

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        self.grow(self.plan.servers)
        workers = [
            self.heartbeats(),
            self.victimiser(),
            self.periodic(PAGE, "cluster", self.plan.dashboards, self.plan.dashboard_every),
            self.time_travel(),
            *(self.subscriber(k) for k in range(self.plan.subscribers)),
        ]
        tasks = [asyncio.create_task(w) for w in workers]
        try:
            await self.obey()
        finally:
            for task in [*tasks, *self.requests]:
                task.cancel()
            await asyncio.gather(*tasks, *self.requests, return_exceptions=True)
        self.control.send(self.sample())

    async def obey(self) -> None:
        """Follow the orchestrator's commands until it says stop."""
        while True:
            while not self.control.poll():
                await asyncio.sleep(0.05)
            command, argument = self.control.recv()
            if command == "stop":
                return
            if command == "servers":
                self.grow(argument)
            elif command == "sample":
                self.control.send(self.sample())

    def sample(self) -> dict:
        done, self.interval = self.interval, Interval()
        now, started = self.loop.time(), self.interval_started
        self.interval_started = now
        return done.as_dict(
            seconds=now - started,
            servers=self.servers,
            in_flight=len(self.requests),
            victims=len(self.victims),
            streams_open=self.streams_open,
        )

    def endpoint(self) -> Endpoint:
        return self.endpoints[next(self.turn) % len(self.endpoints)]

    def send(self, kind: str, raw: bytes, endpoint: Endpoint, due: float) -> None:
        if len(self.requests) >= self.plan.max_in_flight:
            self.interval.dropped += 1
            return
        task = asyncio.create_task(self.timed(kind, raw, endpoint, due))
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    async def timed(self, kind: str, raw: bytes, endpoint: Endpoint, due: float) -> None:
        started = self.loop.time()
        self.interval.lateness.append(_ms(started - due))
        try:
            status, _ = await fetch(endpoint, raw, self.plan.request_timeout)
            reason = None if 200 <= status < 300 else str(status)
        except TimeoutError:
            reason = "timeout"
        except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            reason = type(exc).__name__
        # Failed requests count in the latency too: a timeout must raise the p99, not vanish.
        self.interval.latency[kind].append(_ms(self.loop.time() - started))
        if reason is not None:
            self.interval.errors[kind][reason] += 1

    # --- heartbeats -----------------------------------------------------------------------

    def grow(self, servers: int) -> None:
        now, period = self.loop.time(), self.plan.period
        for i in range(self.servers, servers):
            due = self.t0 + vdc(i) * period
            if due < now:  # joining later: its next slot of the same phase
                due += ((now - due) // period + 1) * period
            heapq.heappush(self.due, (due, i))
        self.servers = max(self.servers, servers)

    async def heartbeats(self) -> None:
        period = self.plan.period
        while True:
            now = self.loop.time()
            while self.due and self.due[0][0] <= now:
                due, i = self.due[0]
                heapq.heapreplace(self.due, (due + period, i))
                endpoint = self.endpoint()
                body = self.beat_body(i)
                raw = request_bytes(endpoint, "POST", "/api/v1/heartbeats", self.plan.agent, body)
                self.send("heartbeat", raw, endpoint, due)
            wait = (self.due[0][0] if self.due else now + 0.05) - self.loop.time()
            await asyncio.sleep(min(max(wait, 0), 0.05))

    def beat_body(self, i: int) -> bytes:
        common = {
            "server": server_name(i),
            "os": "Ubuntu",
            "os_version": "24.04",
            "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "product": "ProGet",
            "product_version": "2025.10",
            "encryption_key_fingerprint": "3f" * 32,
            "status": "ok",
            "verification": "verified",
            "sent_at": datetime.now(UTC).isoformat(),
        }
        components = ("web",) if i in self.victims else ("web", "service")
        return orjson.dumps({"heartbeats": [{**common, "component": c} for c in components]})

    # --- victims: the detection delay -----------------------------------------------------

    async def victimiser(self) -> None:
        """From one period on (every server has beaten), one new victim every victim_every s;
        a victim whose timeout never shows is given up after two stale timeouts (missed)."""
        await asyncio.sleep(self.plan.period + 1)
        stride = 7919  # a prime: walks the servers in a scattered order
        for turn in itertools.count():
            now = self.loop.time()
            for i, since in list(self.victims.items()):
                if now - since > 2 * self.plan.stale_timeout + self.plan.period:
                    del self.victims[i]
                    self.interval.missed += 1
            if self.servers:
                i = (turn * stride) % self.servers
                if i not in self.victims:
                    self.victims[i] = now
            await asyncio.sleep(self.plan.victim_every)

    # --- readers --------------------------------------------------------------------------

    async def periodic(self, path: str, kind: str, clients: int, every: float) -> None:
        """`clients` readers of `path`, each every `every` seconds, their turns spread."""
        slots = [self.t0 + every * c / clients for c in range(clients)]
        heap = [(t, c) for c, t in enumerate(slots)]
        while True:
            due, c = heap[0]
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            heapq.heapreplace(heap, (due + every, c))
            endpoint = self.endpoint()
            self.send(kind, request_bytes(endpoint, "GET", path, self.plan.viewer), endpoint, due)

    async def time_travel(self) -> None:
        due = self.t0 + 2.0  # a moment of history first
        while True:
            await asyncio.sleep(max(0.0, due - self.loop.time()))
            at = random.uniform(self.started_wall, time.time() - 1.0)
            iso = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
            path = f"{PAGE}?at={iso.replace('+00:00', 'Z')}"
            endpoint = self.endpoint()
            raw = request_bytes(endpoint, "GET", path, self.plan.viewer)
            self.send("cluster_at", raw, endpoint, due)
            due += self.plan.time_travel_every

    async def subscriber(self, k: int) -> None:
        """One live dashboard's event stream, resumed from its last id when it ends."""
        await asyncio.sleep(k * 0.25)  # their 5-minute ends do not all come at once
        endpoint = self.endpoints[k % len(self.endpoints)]
        last_id: str | None = None
        while True:
            extra = "Accept: text/event-stream\r\n"
            if last_id is not None:
                extra += f"Last-Event-ID: {last_id}\r\n"
            path = "/api/v1/events/stream"
            raw = request_bytes(endpoint, "GET", path, self.plan.viewer, extra=extra)
            pause, open_ = 0.0, False
            try:
                async for item in sse_frames(endpoint, raw, self.plan.request_timeout):
                    if isinstance(item, int):
                        if item != 200:
                            self.interval.sse_refused += 1
                            pause = 2.0  # the server's retry: 2000
                            break
                        open_ = True
                        self.streams_open += 1
                        continue
                    if item.id is not None:
                        last_id = item.id
                    if item.event is not None:
                        self.on_event(k, item)
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
                self.interval.sse_errors[type(exc).__name__] += 1
                pause = 2.0
            finally:
                if open_:
                    self.streams_open -= 1
            self.interval.sse_reconnects += 1
            await asyncio.sleep(pause)

    def on_event(self, k: int, frame: SseFrame) -> None:
        arrived = time.time()
        timeout = frame.event == "ComponentTimedOut"
        if k != 0 and not timeout:
            return  # stream 0 measures delivery of every event; the others only timeouts
        event = orjson.loads(frame.data)
        if k == 0:
            self.interval.events += 1
            self.interval.delivery_lag.append(_ms(arrived - _wall(event["recorded_at"])))
            if frame.event == "ComponentRecovered":
                self.interval.recoveries += 1
        if not timeout:
            return
        data = event["data"]
        position = str(event["position"])
        victim = self.timeouts.get(position)
        if victim is None:  # the first stream to see it decides what it was
            index = _index(data["server"])
            victim = data["component"] == "service" and self.victims.pop(index, None) is not None
            # (a victim leaves the set here: it beats again from its next slot, a recovery)
            self.timeouts[position] = victim
            self.interval.detectors[data["detector"].split(":", 1)[0]] += 1
            if not victim:
                self.interval.unexpected.append(event["stream"])
        if victim:
            self.interval.seen.append(_ms(arrived - _wall(data["expired_at"])))


def _index(name: str) -> int:
    """The index of a soak server's name; -1 for any other name."""
    prefix, _, number = name.partition("-")
    return int(number) if prefix == "soak" and number.isdigit() else -1


def main(plan: LoadPlan, control: Connection) -> None:
    """The load process's entry (multiprocessing, spawn). Ctrl-C is the orchestrator's to
    handle: it stops this process with its last sample."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def run() -> None:
        await Load(plan, control).run()

    asyncio.run(run())
