"""Capacity soak (issue #17): a mixed load on one box, and the number a deployment is sized by.

    .venv/bin/python -m bench.soak --db postgres --servers 800 --minutes 30
    .venv/bin/python -m bench.soak --db postgres --servers 800 --minutes 30 \\
        --serve-instances 2 --schedulers 2                     # the multi-node deployment
    .venv/bin/python -m bench.soak --db sqlite --ramp [--servers 100 --step-minutes 3]

The deployment is what a user runs: `clustermon serve` instance(s) and `clustermon scheduler`
process(es) on one fresh database (bench/soak_deploy.py), heartbeat period 30 s and the
shortest stale timeout the API accepts (two periods, 60 s), set with PUT
/api/v1/cluster/configuration. The load is one separate asyncio process (bench/soak_load.py):
N servers with two components each, 50 dashboards reading /cluster every 5 s, 20 live event
streams, one time-travel read a second, and a few servers at a time whose Service stops, to
measure the detection delay, and 200 fake product servers polled at their /health (`--targets`).

Every sample interval prints one row (throughput, p50/p99 per request kind, detection delay,
projection lag from /readyz, how late the generator sent, how busy the machine was) and one
line of CPU% / RSS per process (/proc). The end prints the summary against the targets of
bench/soak_report.py and the RSS growth after warm-up (< 5%: no leak), and writes the whole
series as JSON (`--out`) for BENCHMARKS.md.

`--ramp` keeps one deployment and steps N up (x `--ramp-factor`, default 2) every
`--step-minutes`; each step is judged on its samples after one heartbeat period of settling,
and the ramp ends at the first step that misses a target: the largest N that met them all is
the answer. Run it on a quiet machine: the generator shares the cores with the servers (its CPU
and lateness are reported, with a warning when it may be the bottleneck).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import soak_load, soak_report
from bench.soak_deploy import ROOT, Deployment, deployed, start_polled_targets
from bench.soak_load import LoadPlan
from bench.soak_procs import ProcessWatch


class LagPoller(threading.Thread):
    """Projection lag (events not yet in the read tables, age of the oldest) from /readyz once
    a second; each sample takes the worst since the previous one."""

    def __init__(self, deployment: Deployment):
        super().__init__(name="soak-lag", daemon=True)
        self.deployment = deployment
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._events: list[int] = []
        self._seconds: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                lag = self.deployment.get("/readyz", timeout=5)["projection_lag"]
            except (OSError, KeyError, ValueError):
                continue  # a slow probe is a gap in this series, not a reason to stop
            with self._lock:
                self._events.append(lag["events"])
                self._seconds.append(lag["seconds"])

    def take(self) -> dict:
        with self._lock:
            events, seconds, self._events, self._seconds = self._events, self._seconds, [], []
        return {
            "events_max": max(events, default=None),
            "seconds_max": max(seconds, default=None),
            "events_last": events[-1] if events else None,
            "polls": len(events),
        }


class TimeoutLog:
    """The timeouts in the log (GET /api/v1/events?type=ComponentTimedOut): the delay from
    logical expiry to `recorded_at`, whoever detected it, independent of the streams."""

    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.after = 0

    def take(self) -> list[float]:
        delays = []
        while True:
            page = self.deployment.get(
                f"/api/v1/events?type=ComponentTimedOut&after={self.after}&limit=1000"
            )
            for event in page["events"]:
                recorded = datetime.fromisoformat(event["recorded_at"])
                expired = datetime.fromisoformat(event["data"]["expired_at"])
                delays.append((recorded - expired).total_seconds() * 1000)
            if not page["events"]:
                return delays
            self.after = page["next_after"]


class Soak:
    def __init__(self, args, deployment: Deployment, control, load_pid: int):
        self.args = args
        self.deployment = deployment
        self.control = control
        roots = {f"serve{n}": p.pid for n, p in enumerate(deployment.serve, 1)}
        roots |= {f"sched{n}": p.pid for n, p in enumerate(deployment.schedulers, 1)}
        roots["load"] = load_pid
        self.watch = ProcessWatch(roots, deployment.database_name)
        self.lag = LagPoller(deployment)
        self.timeouts = TimeoutLog(deployment)
        self.rows: list[dict] = []
        self.intervals: list[dict] = []  # the raw lists behind each row
        self.detects: list[list[float]] = []
        self.started = time.monotonic()
        self.watch.sample()  # the CPU baseline
        self.lag.start()

    def run_until(self, until: float, step: int) -> None:
        """Sample every --sample-seconds until `until` (monotonic)."""
        while (now := time.monotonic()) < until:
            time.sleep(min(self.args.sample_seconds, until - now))
            self.sample(step)
            dead = self.deployment.alive()
            if dead:
                raise SystemExit(f"died during the soak: {', '.join(dead)}; see the logs")

    def sample(self, step: int) -> None:
        try:
            self.control.send(("sample", None))
            interval = self.control.recv()
        except (EOFError, OSError):
            raise SystemExit("the load generator died; see its traceback above") from None
        detect = self.timeouts.take()
        processes, busy = self.watch.sample()
        r = soak_report.row(
            time.monotonic() - self.started,
            step,
            interval,
            detect,
            self.lag.take(),
            processes,
            busy,
        )
        self.rows.append(r)
        self.intervals.append(interval)
        self.detects.append(detect)
        soak_report.print_row(r)

    def judged(self, since: float, step: int | None = None) -> tuple[dict, list[dict]]:
        """The verdict over the rows from `since` seconds on (of one step, if given)."""
        picked = [
            i
            for i, r in enumerate(self.rows)
            if r["t"] - self.intervals[i]["seconds"] >= since - 0.5
            and (step is None or r["step"] == step)
        ]
        verdict = soak_report.judge(
            [self.intervals[i] for i in picked],
            [d for i in picked for d in self.detects[i]],
            self.args.sweep_interval,
            self.args.detection_from,
        )
        return verdict, [self.rows[i] for i in picked]


def fixed(soak: Soak, args) -> dict:
    warmup = args.warmup_minutes * 60
    print(f"warm-up: the first {warmup:.0f} s are not judged")
    soak.run_until(soak.started + args.minutes * 60, step=0)
    verdict, rows = soak.judged(warmup)
    growth = soak_report.memory_growth(rows)
    print(f"\nSUMMARY ({len(rows)} samples after warm-up, N = {args.servers})")
    soak_report.print_verdict(verdict)
    print("  CPU % of one core, mean:", soak_report.cpu_means(rows))
    leaks = {k: g for k, g in growth.items() if g["growth_percent"] >= soak_report.RSS_GROWTH_LIMIT}
    for label, g in growth.items():
        print(
            f"  RSS {label:10s} {g['rss_mb_after_warmup']:7.1f} -> {g['rss_mb_end']:7.1f} MB"
            f"  {g['growth_percent']:+5.1f}%" + ("" if g["same_process"] else "  (replaced)")
        )
    print(
        f"  {'FAIL' if leaks else 'PASS'}  RSS growth after warm-up"
        f" < {soak_report.RSS_GROWTH_LIMIT:.0f}% (no leak)"
        + (f": {', '.join(leaks)}" if leaks else "")
    )
    warning = soak_report.generator_warning(rows, verdict)
    if warning:
        print("  " + warning)
    return {
        "verdict": verdict,
        "memory_growth": growth,
        "leak_free": not leaks,
        "cpu_mean_percent": soak_report.cpu_means(rows),
        "generator_warning": warning,
    }


def ramp(soak: Soak, args) -> dict:
    steps, servers, best = [], args.servers, None
    settle = args.period  # new servers join over one period: judge the steady part
    for step in range(1, 1000):
        if servers > args.max_servers:
            break
        soak.control.send(("servers", servers))
        begins = time.monotonic()
        print(f"--- step {step}: N = {servers} for {args.step_minutes} min", flush=True)
        soak.run_until(begins + args.step_minutes * 60, step)
        verdict, rows = soak.judged(begins - soak.started + settle, step)
        print(f"step {step}, N = {servers}: {'PASS' if verdict['passed'] else 'FAIL'}")
        soak_report.print_verdict(verdict, indent="    ")
        warning = soak_report.generator_warning(rows, verdict)
        if warning:
            print("    " + warning)
        steps.append(
            {
                "servers": servers,
                "verdict": verdict,
                "cpu_mean_percent": soak_report.cpu_means(rows),
                "generator_warning": warning,
            }
        )
        if not verdict["passed"]:
            break
        best = servers
        servers = max(servers + 1, math.floor(servers * args.ramp_factor))
    print(
        "\nRAMP: the largest N meeting every target: "
        + (f"{best} servers" if best else "none (the first step failed)")
        + f" ({args.db}, {args.serve_instances} serve x {args.schedulers} scheduler)"
    )
    return {"steps": steps, "largest_passing_servers": best}


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(int(memory) / 2**20, 1),
        "load_average_before": os.getloadavg(),
        "python": platform.python_version(),
    }


def commit() -> str | None:
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return None
    dirty = git("diff", "--quiet", "HEAD", "--").returncode != 0
    return head.stdout.strip() + ("+dirty" if dirty else "")


def settings(args) -> dict[str, str]:
    """Process settings of the deployment: the soak's own, then --setting overrides."""
    chosen = {
        # The cap on servers new to the cluster per hour (default 100, api/new_servers.py)
        # would refuse most of a soak's servers, which all join in the first period: raised
        # beyond any N, as a deployment of that size raises it, so that its bookkeeping is
        # still paid.
        "NEW_SERVERS_PER_HOUR": str(10 * max(args.servers, args.max_servers if args.ramp else 0)),
    }
    for item in args.setting:
        name, _, value = item.partition("=")
        chosen[name.removeprefix("CLUSTERMON_")] = value
    return chosen


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n", 1)[0]
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--servers", type=int, default=100, help="N (--ramp: the first step)")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of a fixed run")
    parser.add_argument("--serve-instances", type=int, default=1)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--ramp", action="store_true", help="step N up until a target fails")
    parser.add_argument("--ramp-factor", type=float, default=2.0)
    parser.add_argument("--step-minutes", type=float, default=3.0)
    parser.add_argument("--max-servers", type=int, default=102_400)
    parser.add_argument("--warmup-minutes", type=float, help="default: min(5, minutes / 3)")
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=30.0, help="heartbeat period (s)")
    parser.add_argument(
        "--stale-timeout", type=float, help="default: two periods, the shortest the API accepts"
    )
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument(
        "--detection-from",
        choices=("log", "stream"),
        default="log",
        help="judge the detection delay by the timeout's recorded_at (default) or by its"
        " arrival on the live streams (both are printed)",
    )
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=20, help="live event streams (SSE)")
    parser.add_argument("--time-travel-every", type=float, default=1.0)
    parser.add_argument("--victim-every", type=float, default=10.0)
    parser.add_argument(
        "--targets", type=int, default=200, help="fake product servers polled at their /health"
    )
    parser.add_argument("--workers", type=int, help="per serve instance; default: serve's")
    parser.add_argument(
        "--threads",
        type=int,
        help="per threaded worker (SQLite); default: enough for the streams (a threaded worker"
        " gives at most half its threads to streams)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a process setting of serve and scheduler, e.g. WORKERS=3 (CLUSTERMON_ prefix"
        " optional; repeatable)",
    )
    parser.add_argument("--port", type=int, default=18800 + os.getpid() % 400)
    parser.add_argument("--out", type=Path, help="JSON series (default: in the temp folder)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.stale_timeout is None:
        args.stale_timeout = 2 * args.period
    if args.warmup_minutes is None:
        args.warmup_minutes = min(5.0, args.minutes / 3)
    if args.threads is None and args.db == "sqlite":
        # Without this, 20 streams on default threads (8: 4 streams per worker) get 503s. The
        # kernel spreads connections unevenly over the workers: room for all of an instance's.
        args.threads = max(8, 2 * math.ceil(args.subscribers / args.serve_instances) + 4)
    if args.out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        mode = "ramp" if args.ramp else f"n{args.servers}"
        name = f"clustermon-soak-{args.db}-{mode}-{args.serve_instances}x{args.schedulers}-{stamp}"
        args.out = Path(tempfile.gettempdir()) / f"{name}.json"
    return args


def main() -> None:
    args = arguments()
    log_dir = Path(tempfile.mkdtemp(prefix="clustermon-soak-logs-"))
    meta = {
        "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "commit": commit(),
        "settings": settings(args),
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(),
    }
    print(
        f"soak: {args.db}, {args.serve_instances} serve x {args.schedulers} scheduler,"
        f" {'ramp from ' if args.ramp else ''}N = {args.servers}, period {args.period:.0f} s,"
        f" stale timeout {args.stale_timeout:.0f} s, sweep {args.sweep_interval} s,"
        f" {args.dashboards} dashboards, {args.subscribers} streams; settings {meta['settings']}"
        f"{f', threads {args.threads}' if args.threads else ''}; commit {meta['commit']};"
        f" load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; logs {log_dir}",
        flush=True,
    )
    result: dict = {"meta": meta}
    ok = False
    with deployed(
        args.db,
        serve_instances=args.serve_instances,
        schedulers=args.schedulers,
        sweep_interval=args.sweep_interval,
        workers=args.workers,
        threads=args.threads,
        port=args.port,
        settings=settings(args),
        log_dir=log_dir,
    ) as deployment:
        deployment.configure(
            {
                "heartbeat_frequency_seconds": int(args.period),
                "stale_timeout_seconds": int(args.stale_timeout),
            }
        )
        start_polled_targets(deployment, args.targets, args.period)
        plan = LoadPlan(
            urls=tuple(deployment.urls),
            agent=deployment.agent,
            viewer=deployment.viewer,
            servers=args.servers,
            period=args.period,
            dashboards=args.dashboards,
            subscribers=args.subscribers,
            time_travel_every=args.time_travel_every,
            victim_every=args.victim_every,
            stale_timeout=args.stale_timeout,
        )
        spawn = multiprocessing.get_context("spawn")
        control, child_end = spawn.Pipe()
        load = spawn.Process(target=soak_load.main, args=(plan, child_end), name="soak-load")
        load.start()
        child_end.close()  # ours: so that the load process's exit reads as EOF here
        assert load.pid is not None  # started
        soak = Soak(args, deployment, control, load.pid)
        print(soak_report.HEADER, flush=True)
        try:
            result |= ramp(soak, args) if args.ramp else fixed(soak, args)
            ok = True
        except KeyboardInterrupt:
            print("\ninterrupted: writing what was measured")
        finally:
            soak.lag.stop.set()
            try:  # stop the load (closing its streams lets the servers stop at once)
                control.send(("stop", None))
                while control.poll(60):
                    control.recv()  # a sample answered meanwhile, the last one, then EOF
            except (EOFError, OSError):
                pass
            load.join(30)
            if load.is_alive():
                load.terminate()
            result["samples"] = soak.rows
            args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
            print(f"series: {args.out}", flush=True)
    if ok and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
