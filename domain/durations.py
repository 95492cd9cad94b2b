"""How clustermon words a duration, everywhere: reasons, history, explanations, reports and
the command line."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """`95 s`, `7 min 5 s`, `3 h 20 min`, `4 days`; `—` for no duration at all."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        # Seconds too, so a component just past a 5 min timeout does not read "5 min (stale
        # timeout 5 min)".
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def duration_span(seconds: int) -> tuple[int, int]:
    """The whole seconds (first, last) that `format_duration` words like `seconds`: the
    renderer reuses a reason's text while the age stays within them."""
    if seconds < 7200:
        return seconds, seconds
    if seconds < 172_800:
        first = seconds - seconds % 60
        return first, first + 59
    first = seconds - seconds % 86_400
    return first, first + 86_399
