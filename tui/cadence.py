"""Whether the live screen keeps up with its interval, and a log of when its frames arrive.

On a busy box the UI thread can take longer to draw a frame than the
interval: the collector keeps its schedule, newer frames replace those not
yet drawn (FrameReady.can_replace), and the screen updates less often than
asked. The header says so rather than leaving the user to wonder whether a
figure is a second old or five.
"""

from __future__ import annotations

import os
from collections import deque
from typing import TextIO

# Set to a file name, the app appends a line per frame it takes: the
# monotonic ns it took it, and the frame's own monotonic ns (when it was
# sampled). benchmarks/overhead --cadence reads it.
FRAME_LOG_ENV = "ORAC_FRAME_LOG"
# Frames this far apart on average, over the last WINDOW, count as behind:
# well past the scheduler's jitter, near where a user notices.
BEHIND_RATIO = 1.25
WINDOW = 5


class Cadence:
    """The gaps between the last frames the screen took, against the interval asked for."""

    def __init__(self, interval_s: float, log_path: str | None = None) -> None:
        self.interval_s = interval_s
        self._gaps: deque[float] = deque(maxlen=WINDOW)
        self._last_ns: int | None = None
        self._log: TextIO | None = open(log_path, "a", buffering=1) if log_path else None

    @classmethod
    def from_env(cls, interval_s: float) -> Cadence:
        return cls(interval_s, os.environ.get(FRAME_LOG_ENV) or None)

    def arrived(self, now_ns: int, frame_mono_ns: int) -> None:
        if self._log is not None:
            self._log.write(f"{now_ns} {frame_mono_ns}\n")
        if self._last_ns is not None:
            self._gaps.append((now_ns - self._last_ns) / 1e9)
        self._last_ns = now_ns

    def restart(self) -> None:
        """Forget the gaps (a pause: no frames were asked for)."""
        self._gaps.clear()
        self._last_ns = None

    def behind(self) -> str | None:
        """"frames 2.4 s apart" while the recent frames come late on average; None while on time."""
        if not self._gaps:
            return None
        mean_s = sum(self._gaps) / len(self._gaps)
        if mean_s <= BEHIND_RATIO * self.interval_s:
            return None
        return f"frames {mean_s:.1f} s apart"

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
