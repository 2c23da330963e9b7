"""How numbers are written on screen. "-" stands for "not measured", never 0."""

from __future__ import annotations

MISSING = "-"


def human_bytes(n: float | None) -> str:
    """1536 -> "1.5K", as htop and free -h write sizes."""
    if n is None:
        return MISSING
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(n: float | None) -> str:
    """12345.6 -> "12.3k" for per-second counts."""
    if n is None:
        return MISSING
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def cpu_time(seconds: float) -> str:
    """Cumulative CPU time as htop's TIME+: M:SS.cc, or HhMM past an hour."""
    if seconds >= 3600:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours}h{rest // 60:02d}"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:05.2f}"


def uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}"
    if days:
        return f"{days} day{'s' if days != 1 else ''}, {clock}"
    return clock
