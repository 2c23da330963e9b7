"""What the process screen shows beyond the table, read once per tick for one pid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import psutil

from .redaction import ARG_SEPARATOR


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcessDetails:
    """None marks a field the kernel would not tell us (permission denied).

    The state is not here: the process screen shows the letter of the tick
    it was sampled in, and a second reading of it here could disagree.
    """

    pid: int
    # arguments separated as probes.redaction expects
    cmdline: str
    exe: str | None
    cwd: str | None
    num_threads: int
    num_fds: int | None
    started: float


class ProcessGone(Exception):
    pass


def read_details(pid: int) -> ProcessDetails:
    """Raises ProcessGone when the process has exited."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return ProcessDetails(
                pid=pid,
                cmdline=ARG_SEPARATOR.join(proc.cmdline()) or f"[{proc.name()}]",
                exe=_allowed(proc.exe),
                cwd=_allowed(proc.cwd),
                num_threads=proc.num_threads(),
                num_fds=_allowed(proc.num_fds),
                started=proc.create_time(),
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess) as exc:
        raise ProcessGone(f"process {pid} has exited") from exc


def _allowed(getter: Callable[[], T]) -> T | None:
    try:
        return getter()
    except psutil.AccessDenied:
        return None
