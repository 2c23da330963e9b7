"""What playing a recording needs besides the file: speeds, positions, times a user types.

Kept apart from the rest of probes.store so that the live UI can draw its replay
bar and parse times without importing SQLite and zstd.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time

# Steps a UI can offer for faster/slower.
SPEEDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayPosition:
    """Where a replay is, for a timeline bar."""

    index: int
    count: int
    wall_ns: int
    first_wall_ns: int
    last_wall_ns: int
    speed: float
    paused: bool

    @property
    def fraction(self) -> float:
        """0.0 at the first frame to 1.0 at the last, by time."""
        span = self.last_wall_ns - self.first_wall_ns
        if span <= 0:
            return 1.0 if self.count <= 1 else self.index / (self.count - 1)
        return min(1.0, max(0.0, (self.wall_ns - self.first_wall_ns) / span))


_RELATIVE = re.compile(r"^\+(\d+(?:\.\d*)?)\s*([smh]?)$")
_AGO = re.compile(r"^(\d+(?:\.\d*)?)\s*([smhd]?)\s+ago$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?$")
TIME_FORMATS = "HH:MM[:SS], YYYY-MM-DD HH:MM[:SS], +90s, +10m, +1h, 3m ago or Unix seconds"
# Recordings keep wall times as int64 nanoseconds since the epoch.
LATEST_WALL_NS = 2**63 - 1


def _wall_ns(text: str, seconds: float, base_ns: int = 0) -> int:
    """`base_ns` plus `seconds` as wall-clock ns, or ValueError for what no recording can hold."""
    if not math.isfinite(seconds) or not 0 <= base_ns + seconds * 1e9 <= LATEST_WALL_NS:
        raise ValueError(f"time {text!r} is outside the times a recording can hold (1970 to 2262)")
    return base_ns + int(seconds * 1e9)


def parse_time(text: str, start_wall_ns: int) -> int:
    """A wall time (ns) from what a user types, for --from/--to and seeking.

    "+10m" is relative to `start_wall_ns` (the recording's first frame),
    "3m ago" to now;
    "HH:MM[:SS]" is that local time on the recording's first day, or the day
    after if that is before the start (a recording from 23:00 to 01:00 reads
    "00:30" as the night's); ISO dates and times are local unless they carry
    an offset; a plain number is Unix seconds.

    Raises:
        ValueError: with a one-line message listing the accepted forms.
    """
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[ago.group(2)]
        return _wall_ns(text, time.time() - float(ago.group(1)) * scale)
    relative = _RELATIVE.match(text)
    if relative:
        scale = {"": 1, "s": 1, "m": 60, "h": 3600}[relative.group(2)]
        return _wall_ns(text, float(relative.group(1)) * scale, start_wall_ns)
    clock = _CLOCK.match(text)
    if clock:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        second = float(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second >= 60:
            raise ValueError(f"cannot read time {text!r}: use {TIME_FORMATS}")
        start = dt.datetime.fromtimestamp(start_wall_ns / 1e9)
        when = start.replace(hour=hour, minute=minute, second=0, microsecond=0) + dt.timedelta(seconds=second)
        if when.timestamp() * 1e9 < start_wall_ns - 1e9:
            when += dt.timedelta(days=1)
        return _wall_ns(text, when.timestamp())
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = dt.datetime.fromisoformat(text).timestamp()
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"cannot read time {text!r}: use {TIME_FORMATS}") from None
    return _wall_ns(text, seconds)
