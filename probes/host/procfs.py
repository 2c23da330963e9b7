"""Small, failure-tolerant readers for /proc and /sys text files."""

from __future__ import annotations

import os

PROC = "/proc"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE")
NS_PER_TICK = 1_000_000_000 // CLOCK_TICKS_PER_S


def read_text(path: str) -> str | None:
    """Return the file's text, or None when it is missing or unreadable.

    Files under /proc vanish with their process between listing and reading;
    that is normal, not an error.
    """
    data = read_bytes(path, whole=True)
    return None if data is None else data.decode("utf-8", "replace")


def read_bytes(path: str, whole: bool = False) -> bytes | None:
    """The file's bytes: the first 64 KiB, or all of it with `whole`.

    os.open and os.read rather than open(): open() asks the kernel whether
    the file is a terminal (an ioctl that fails with ENOTTY) on every call,
    which orac's own syscalls pane showed as its busiest syscall.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 65536)
        if whole and data:
            # Many /proc files come a page per read: read on to the end.
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


# Between the arguments of /proc/PID/cmdline, kept so that each one's end is
# known (probes.model.redaction masks argument by argument).
ARG_SEPARATOR = "\0"


def shown(cmdline: str) -> str:
    """A command line as one line of text: its arguments separated by spaces."""
    return cmdline.replace(ARG_SEPARATOR, " ")
