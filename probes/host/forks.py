"""Fork rate from /proc/stat's `processes` counter, for the "cpu" probe.

`processes` is the kernel's total_forks: one per task created since boot
(kernel/fork.c copy_process), so fork(), vfork() and clone() all count,
threads included; exec() starts no task and is not counted. It is one
machine-wide counter, not per namespace. `vmstat -f` prints the same
number ("forks"); sar -w's proc/s is its rate, as forks_per_s computes.
"""

from __future__ import annotations


def parse_forks(stat_text: str) -> int | None:
    """The `processes` counter of a /proc/stat text; None where the line is missing."""
    for line in stat_text.splitlines():
        if line.startswith("processes "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def forks_per_s(prev: int | None, curr: int | None, dt_s: float) -> float | None:
    """Tasks created per second between two `processes` readings, as sar -w's proc/s.

    None when either reading is missing or the counter went backwards (a
    recording that spans a reboot).
    """
    if prev is None or curr is None or curr < prev or dt_s <= 0:
        return None
    return (curr - prev) / dt_s
