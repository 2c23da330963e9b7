"""glibc malloc settings for a process that samples for hours: what a tick frees goes back to the kernel.

A busy tick (process churn filling the eBPF maps) builds samples and views
of tens of thousands of objects and map buffers of megabytes, freed a tick
or two later. With glibc's defaults the freed memory mostly stays in the
process: a buffer freed from an mmap raises the mmap threshold to its size,
so later ones come from the heap, where a little that stays alive pins the
pages around it; and each thread that allocates gets its own arena (up to
8 per CPU) to fragment in turn. RSS then ratchets up with every tick bigger
than the ones before and never comes down. A fixed threshold keeps big
buffers in mmaps of their own, unmapped when freed; two arenas serve the
collector and the UI thread. Measured by benchmarks/memory.
"""

from __future__ import annotations

import ctypes

# mallopt(3) parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2


def return_freed_memory() -> bool:
    """Apply the settings; False where malloc is not glibc's (musl has no mallopt)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
