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
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_bytes(path: str) -> bytes | None:
    """Like read_text, without decoding (cheaper on the per-process hot path)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)
