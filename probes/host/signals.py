"""Signals that reach the process the user chose, never a later one that got its pid."""

from __future__ import annotations

import os
import signal

from probes.host.procfs import PROC, read_bytes
from probes.sources.processes import parse_stat


class NotThatProcess(Exception):
    """The pid is gone, or now belongs to another process than the one shown."""


def start_time_ns(pid: int, proc: str = PROC) -> int | None:
    """When `pid` started, since boot, on the clock of ProcSample.start_time_ns; None if there is no such pid."""
    data = read_bytes(f"{proc}/{pid}/stat")
    if not data:
        return None
    try:
        return parse_stat(data)[6]
    except (ValueError, IndexError):
        return None


def send_signal(pid: int, started_ns: int, signum: int) -> None:
    """Send `signum` to `pid` if it is still the process that started at `started_ns`.

    A pidfd is opened first and the start time checked after: the pidfd
    names one process, so a pid that is reused between the check and the
    signal cannot be signalled (os.kill would hit whichever process holds
    the pid then). Raises NotThatProcess, or PermissionError when orac may
    not signal it.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise NotThatProcess(f"{pid} has exited") from None
    try:
        if start_time_ns(pid) != started_ns:
            raise NotThatProcess(f"{pid} has exited; the pid now belongs to another process")
        try:
            signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:
            raise NotThatProcess(f"{pid} has exited") from None
    finally:
        os.close(fd)
