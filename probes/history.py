"""A compact ring of recent per-process CPU and memory, for sparklines.

Each tick keeps three C arrays (pids, CPU %, RSS) instead of Python objects
per process: a minute at 3000 processes is about 2 MB, not tens.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Iterable

from .views import ProcessView


class ProcessHistory:
    def __init__(self, ticks: int = 60) -> None:
        self._ticks: deque[tuple[array, array, array]] = deque(maxlen=ticks)

    def add(self, processes: Iterable[ProcessView]) -> None:
        pids = array("i")
        cpu = array("f")
        rss = array("d")
        for p in processes:
            pids.append(p.pid)
            cpu.append(math.nan if p.cpu_percent is None else p.cpu_percent)
            rss.append(p.rss_bytes)
        self._ticks.append((pids, cpu, rss))

    def series(self, pid: int) -> tuple[list[float], list[float]]:
        """CPU % and RSS bytes of `pid`, oldest first, for the ticks it was seen."""
        cpu_series: list[float] = []
        rss_series: list[float] = []
        for pids, cpu, rss in self._ticks:
            try:
                i = pids.index(pid)
            except ValueError:
                continue
            if math.isnan(cpu[i]):
                continue
            cpu_series.append(cpu[i])
            rss_series.append(rss[i])
        return cpu_series, rss_series
