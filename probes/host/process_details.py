"""What the process screen shows beyond the table, read once per tick for one pid."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psutil

from probes.host.procfs import ARG_SEPARATOR

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
                exe=_exe(pid),
                cwd=_allowed(proc.cwd),
                num_threads=proc.num_threads(),
                num_fds=_allowed(proc.num_fds),
                started=proc.create_time(),
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess) as exc:
        raise ProcessGone(f"process {pid} has exited") from exc


def _exe(pid: int) -> str | None:
    """The executable's path; None where the kernel refuses it, "" where there is none (a kernel thread).

    Read here, not with psutil's exe(): refused, that guesses a path from
    the command line, which the process itself wrote.
    """
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        return None
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise psutil.NoSuchProcess(pid) from None
        return ""


def _allowed(getter: Callable[[], T]) -> T | None:
    try:
        return getter()
    except psutil.AccessDenied:
        return None
