"""How numbers are written on screen. "-" stands for "not measured", never 0."""

from __future__ import annotations

from probes.model.histograms import LatencyBucket

MISSING = "-"
# a figure the kernel keeps from orac's user (another user's exe, cwd, fds)
DENIED = "permission denied"

# /proc/PID/stat's state letters, in the words of ps(1)
STATE_WORDS = {
    "R": "running or runnable",
    "S": "sleeping",
    "D": "uninterruptible sleep: disk or lock",
    "I": "idle kernel thread",
    "T": "stopped",
    "t": "stopped by a debugger",
    "Z": "zombie: exited, not yet reaped",
    "X": "dead",
    "P": "parked",
}


def state(letter: str) -> str:
    """"D" -> "D (uninterruptible sleep: disk or lock)": one reading's letter and its words."""
    word = STATE_WORDS.get(letter)
    return f"{letter} ({word})" if word else letter


def human_bytes(n: float | None) -> str:
    """1536 -> "1.5K", as htop and free -h write sizes."""
    if n is None:
        return MISSING
    value = float(n)
    units = ("B", "K", "M", "G", "T")
    for i, unit in enumerate(units):
        if unit == "B":
            text = f"{int(value)}B"
        else:
            text = f"{value:.1f}{unit}" if round(abs(value), 1) < 100 else f"{value:.0f}{unit}"
        # Decide on the unit after rounding, so 1048575 is "1.0M", not "1024K".
        if i == len(units) - 1 or round(abs(value), 1 if unit != "B" else 0) < 1024:
            return text
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(n: float | None) -> str:
    """12345.6 -> "12.3k" for per-second counts."""
    if n is None:
        return MISSING
    # Each unit starts where the smaller one would round up to "1000", so
    # 999.7 is "1.0k", not "1000", and 999999 is "1.0M", not "1000.0k".
    for unit, scale, starts_at in (("G", 1e9, 999.95e6), ("M", 1e6, 999.95e3), ("k", 1e3, 999.5)):
        if abs(n) >= starts_at:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def cpu_time(seconds: float) -> str:
    """Cumulative CPU time as htop's TIME+: M:SS.cc, or HhMM past an hour."""
    centis = round(seconds * 100)
    if centis >= 360000:
        hours, rest = divmod(centis // 100, 3600)
        return f"{hours}h{rest // 60:02d}"
    minutes, centis = divmod(centis, 6000)
    return f"{minutes}:{centis // 100:02d}.{centis % 100:02d}"


def uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}"
    if days:
        return f"{days} day{'s' if days != 1 else ''}, {clock}"
    return clock


def span(seconds: float) -> str:
    """A stretch of wall time: 42 -> "42s", 252 -> "4m12s", 3600 -> "1h00m"."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def human_duration_ns(ns: float | None) -> str:
    """850 -> "850ns", 12_300 -> "12.3us", 4_100_000 -> "4.1ms", as latency is read."""
    if ns is None:
        return MISSING
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale * 0.9995:
            value = ns / scale
            return f"{value:.0f}{unit}" if value >= 99.95 else f"{value:.1f}{unit}"
    return f"{ns:.0f}ns"


def _figures(value: float) -> str:
    return f"{value:.0f}" if value >= 9.95 else f"{value:.1f}"


def latency_bucket(bucket: LatencyBucket | None) -> str:
    """The log2 bucket a percentile lies in, as the range it is: [2**23, 2**24) ns -> "8.4-17ms".

    Both ends in the unit of the upper one, two or three figures each, so it
    is at most 9 characters ("131-262us"); the open-ended last bucket is
    ">=2.1s".
    """
    if bucket is None:
        return MISSING
    if bucket.high_ns is None:
        return ">=" + human_duration_ns(bucket.low_ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if bucket.high_ns >= scale * 0.9995:
            return f"{_figures(bucket.low_ns / scale)}-{_figures(bucket.high_ns / scale)}{unit}"
    return f"{bucket.low_ns}-{bucket.high_ns}ns"
