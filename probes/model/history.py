"""A compact ring of recent per-process CPU and memory, for sparklines.

Each tick keeps three C arrays (pids, CPU %, RSS in KiB) instead of Python
objects per process, and shares the pids array with the tick before when
the processes are the same ones (most ticks): a minute at 3000 processes is
about 1.5 MB, not tens.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable

from probes.sources.processes import ProcessView


class ProcessHistory:
    def __init__(self, ticks: int = 60) -> None:
        self._ticks: deque[tuple[array[int], array[float], array[int]]] = deque(maxlen=ticks)

    def add(self, processes: Iterable[ProcessView]) -> None:
        pids = array("i")
        cpu = array("f")
        # KiB: RSS is whole pages, and 2^32 KiB is 4 TiB
        rss_kib = array("I")
        for p in processes:
            pids.append(p.pid)
            cpu.append(math.nan if p.cpu_percent is None else p.cpu_percent)
            rss_kib.append(min(p.rss_bytes >> 10, 0xFFFFFFFF))
        if self._ticks and self._ticks[-1][0] == pids:
            pids = self._ticks[-1][0]
        self._ticks.append((pids, cpu, rss_kib))

    def series(self, pid: int) -> tuple[list[float], list[float]]:
        """CPU % and RSS bytes of `pid`, oldest first, for the ticks it was seen."""
        cpu_series: list[float] = []
        rss_series: list[float] = []
        for pids, cpu, rss_kib in self._ticks:
            try:
                i = pids.index(pid)
            except ValueError:
                continue
            if math.isnan(cpu[i]):
                continue
            cpu_series.append(cpu[i])
            rss_series.append(float(rss_kib[i] << 10))
        return cpu_series, rss_series
