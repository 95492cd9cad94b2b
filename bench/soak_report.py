"""The soak's numbers: percentiles, one row per sample interval, the verdict against the capacity
targets of issue #17, and the printed table and summary.

Targets (what a user sizes a deployment by): heartbeat p99 < 250 ms, `GET /cluster` p99 < 100
ms, detection delay p99 <= sweep interval + 250 ms. Detection delay runs from the logical
expiry (`expired_at`: last heartbeat + stale timeout) to the timeout being in the log
(`recorded_at`: from then on /api/v1/events and `GET /cluster`, which reads its writes, show
it), or with `--detection-from stream` to its arrival on a live event stream. The stream adds
its delivery: on SQLite the live tail polls every 0.5 s, a constant that does not grow with N,
so judging SQLite by the stream would fail every N. Both are always printed. A run with more
than 0.1% failed requests, or whose servers died, fails whatever its latencies say.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from bench.soak_load import KINDS

HEARTBEAT_P99_MS = 250.0
CLUSTER_P99_MS = 100.0
DETECTION_SLACK_MS = 250.0
MAX_FAILED_SHARE = 0.001
RSS_GROWTH_LIMIT = 5.0  # percent, after warm-up: more is a leak
# The generator is suspect when it sends this late or burns this much of a core: then a
# failed target may be the client's, not the server's.
GENERATOR_LATE_MS = 50.0
GENERATOR_CPU_PERCENT = 60.0
LABELS = {
    "heartbeat": "POST /heartbeats",
    "cluster": "GET /cluster",
    "cluster_at": "GET /cluster?at=",
}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def merged(intervals: Iterable[dict], key: str, sub: str | None = None) -> list[float]:
    values: list[float] = []
    for interval in intervals:
        part = interval[key] if sub is None else interval[key][sub]
        values.extend(part)
    return values


def row(
    t: float, step: int, interval: dict, detect: list[float], lag: dict, processes, busy: float
) -> dict:
    """One sample interval, as printed and as written to the JSON series."""
    seconds = interval["seconds"]
    requests = {}
    for kind in KINDS:
        latency = interval["latency"][kind]
        requests[kind] = {
            **stats(latency),
            "per_s": len(latency) / seconds,
            "errors": interval["errors"][kind],
        }
    return {
        "t": round(t, 1),
        "step": step,
        "servers": interval["servers"],
        "requests": requests,
        "lateness_p99": percentile(interval["lateness"], 99),
        "dropped": interval["dropped"],
        "in_flight": interval["in_flight"],
        "detection": {
            "log": stats(detect),
            "seen": stats(interval["seen"]),
            "unexpected": interval["unexpected"],
            "missed": interval["missed"],
            "recoveries": interval["recoveries"],
            "victims": interval["victims"],
            "detectors": interval["detectors"],
        },
        "sse": {
            "open": interval["streams_open"],
            "events": interval["events"],
            "refused": interval["sse_refused"],
            "errors": interval["sse_errors"],
            "reconnects": interval["sse_reconnects"],
            "delivery_lag": stats(interval["delivery_lag"]),
        },
        "projection_lag": lag,
        "machine_busy_percent": round(busy, 1),
        "processes": {
            label: {
                "cpu_percent": None if p.cpu_percent is None else round(p.cpu_percent, 1),
                "rss_mb": None if p.rss_mb is None else round(p.rss_mb, 1),
                "pids": p.pids,
            }
            for label, p in processes.items()
        },
    }


def _f(value: float | None, width: int = 6, digits: int = 0) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


HEADER = (
    "     t      N   hb/s   hb p50    p99 | clus p50    p99 | at p99 | fail |"
    " detect p99  seen p99    n | lag ev    s | late p99 | busy%"
)


def print_row(r: dict) -> None:
    req = r["requests"]
    failed = sum(sum(req[k]["errors"].values()) for k in KINDS) + r["dropped"]
    det = r["detection"]
    lag = r["projection_lag"]
    print(
        f"{r['t']:6.0f} {r['servers']:6d} {req['heartbeat']['per_s']:6.1f}"
        f"  {_f(req['heartbeat']['p50'], 6, 1)} {_f(req['heartbeat']['p99'], 6, 1)}"
        f" |   {_f(req['cluster']['p50'], 6, 1)} {_f(req['cluster']['p99'], 6, 1)}"
        f" | {_f(req['cluster_at']['p99'], 6, 1)} | {failed:4d} |"
        f"     {_f(det['log']['p99'])}    {_f(det['seen']['p99'])} {det['seen']['n']:4d}"
        f" | {_f(lag['events_max'])} {_f(lag['seconds_max'], 4, 1)}"
        f" |   {_f(r['lateness_p99'], 6, 1)} | {r['machine_busy_percent']:5.1f}",
        flush=True,
    )
    procs = "  ".join(
        f"{label} {_f(p['cpu_percent'], 1)}%"
        + (f"/{p['rss_mb']:.0f}M" if label != "postgres" else f"({len(p['pids'])})")
        for label, p in r["processes"].items()
    )
    print(f"        cpu%/rss: {procs}", flush=True)
    notes = []
    if det["unexpected"]:
        notes.append(f"UNEXPECTED timeouts: {', '.join(det['unexpected'][:5])}")
    if det["missed"]:
        notes.append(f"{det['missed']} victims never timed out")
    if r["sse"]["refused"] or r["sse"]["errors"]:
        notes.append(f"streams refused {r['sse']['refused']}, broken {r['sse']['errors']}")
    errors = {k: req[k]["errors"] for k in KINDS if req[k]["errors"]}
    if errors or r["dropped"]:
        notes.append(f"failures {errors} dropped {r['dropped']}")
    if notes:
        print("        ! " + "; ".join(notes), flush=True)


def judge(
    intervals: list[dict], detect: list[float], sweep_interval: float, detection_from: str = "log"
) -> dict:
    """The targets over a set of sample intervals (the measured part of a run or a step)."""
    requests = {kind: stats(merged(intervals, "latency", kind)) for kind in KINDS}
    failures: Counter = Counter()
    for interval in intervals:
        for kind in KINDS:
            failures.update({f"{kind} {k}": v for k, v in interval["errors"][kind].items()})
        failures["dropped by the generator"] += interval["dropped"]
    total = sum(r["n"] for r in requests.values()) or 1
    seen = stats(merged(intervals, "seen"))
    log = stats(detect)
    detection = log if detection_from == "log" else seen
    detection_limit = sweep_interval * 1000 + DETECTION_SLACK_MS
    failed_share = sum(failures.values()) / total
    checks = {
        f"heartbeat p99 < {HEARTBEAT_P99_MS:.0f} ms": _below(
            requests["heartbeat"]["p99"], HEARTBEAT_P99_MS
        ),
        f"GET /cluster p99 < {CLUSTER_P99_MS:.0f} ms": _below(
            requests["cluster"]["p99"], CLUSTER_P99_MS
        ),
        f"detection p99 ({detection_from}) <= {detection_limit:.0f} ms": _below(
            detection["p99"], detection_limit, inclusive=True
        ),
        f"failed requests <= {MAX_FAILED_SHARE:.1%}": failed_share <= MAX_FAILED_SHARE,
    }
    return {
        "requests": requests,
        "failures": {k: v for k, v in failures.items() if v},
        "detection_seen": seen,
        "detection_log": log,
        "unexpected_timeouts": sum(len(i["unexpected"]) for i in intervals),
        "missed_timeouts": sum(i["missed"] for i in intervals),
        "delivery_lag": stats(merged(intervals, "delivery_lag")),
        "lateness": stats(merged(intervals, "lateness")),
        "checks": checks,
        "passed": all(checks.values()),
    }


def _below(value: float | None, limit: float, inclusive: bool = False) -> bool:
    if value is None:
        return False  # not measured is not met
    return value <= limit if inclusive else value < limit


def memory_growth(rows: list[dict]) -> dict:
    """RSS of each clustermon process: first measured row vs last, in percent. PostgreSQL's
    backends are left out (their RSS counts the shared buffers they touched)."""
    if len(rows) < 2:
        return {}
    first, last = rows[0]["processes"], rows[-1]["processes"]
    growth = {}
    for label, now in last.items():
        before = first.get(label)
        if label == "postgres" or before is None or not before["rss_mb"] or now["rss_mb"] is None:
            continue
        same = before["pids"] == now["pids"]
        growth[label] = {
            "rss_mb_after_warmup": before["rss_mb"],
            "rss_mb_end": now["rss_mb"],
            "growth_percent": round(100 * (now["rss_mb"] - before["rss_mb"]) / before["rss_mb"], 1),
            "same_process": same,  # False: the process was replaced meanwhile (not comparable)
        }
    return growth


def cpu_means(rows: list[dict]) -> dict:
    sums: dict[str, list[float]] = {}
    for r in rows:
        for label, p in r["processes"].items():
            if p["cpu_percent"] is not None:
                sums.setdefault(label, []).append(p["cpu_percent"])
    means: dict[str, float | None] = {k: round(sum(v) / len(v), 1) for k, v in sums.items()}
    busy = [r["machine_busy_percent"] for r in rows]
    means["machine busy (all cores)"] = round(sum(busy) / len(busy), 1) if busy else None
    return means


def print_verdict(verdict: dict, indent: str = "  ") -> None:
    for kind, s in verdict["requests"].items():
        print(
            f"{indent}{LABELS[kind]:18s} n={s['n']:7d}  p50 {_f(s['p50'], 7, 1)} ms"
            f"  p99 {_f(s['p99'], 7, 1)} ms  max {_f(s['max'], 7, 1)} ms"
        )
    for name, key in (
        ("detection, expiry -> on a stream", "detection_seen"),
        ("detection, expiry -> in the log", "detection_log"),
        ("stream delivery, log -> stream 0", "delivery_lag"),
        ("generator lateness", "lateness"),
    ):
        s = verdict[key]
        print(
            f"{indent}{name:34s} n={s['n']:6d}  p50 {_f(s['p50'], 7, 1)} ms"
            f"  p99 {_f(s['p99'], 7, 1)} ms  max {_f(s['max'], 7, 1)} ms"
        )
    print(
        f"{indent}unexpected timeouts (false alarms): {verdict['unexpected_timeouts']};"
        f" victims never timed out: {verdict['missed_timeouts']};"
        f" failures: {verdict['failures'] or 'none'}"
    )
    for check, ok in verdict["checks"].items():
        print(f"{indent}{'PASS' if ok else 'FAIL'}  {check}")


def generator_warning(rows: list[dict], verdict: dict) -> str | None:
    cpu = cpu_means(rows).get("load")
    late = verdict["lateness"]["p99"]
    if (cpu or 0) > GENERATOR_CPU_PERCENT or (late or 0) > GENERATOR_LATE_MS:
        return (
            f"WARNING: the load generator may be the bottleneck (its CPU {cpu}% of a core,"
            f" sending p99 {late:.0f} ms late): the figures may understate the server"
        )
    return None
