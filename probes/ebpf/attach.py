"""Attaching loaded programs from orac's own process, without bcc: raw tracepoints, tracepoints, perf events.

A drill-down's programs are compiled once (seconds of clang) and kept loaded
but detached; opening a drill-down only attaches them, a few system calls:
BPF_RAW_TRACEPOINT_OPEN for a raw tracepoint, and for a classic tracepoint
or a sampling event perf_event_open(2) with the program set on the event
(PERF_EVENT_IOC_SET_BPF), as bcc's own attach functions do. Closing the
descriptor detaches the program. Only uapi layouts are used
(linux/bpf.h, linux/perf_event.h), which only grow at the end.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
from functools import lru_cache

from probes.ebpf.bpf import bpf
from probes.ebpf.checks import TRACEFS_EVENTS_DIRS
from probes.host.procfs import read_text

BPF_RAW_TRACEPOINT_OPEN = 17

# perf_event_open(2)'s number where it is not the asm-generic one (241).
PERF_EVENT_OPEN_NR = {"x86_64": 298, "i386": 336, "i686": 336, "ppc64le": 319, "ppc64": 319, "s390x": 331}
ASM_GENERIC_PERF_EVENT_OPEN_NR = 241

PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_ATTR_FREQ = 1 << 10  # the `freq` bit of perf_event_attr's flags
PERF_FLAG_FD_CLOEXEC = 1 << 3
# _IO('$', 0) and _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408


class _RawTracepointAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class _PerfEventAttr(ctypes.Structure):
    """PERF_ATTR_SIZE_VER0 of struct perf_event_attr: every field orac sets."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period_or_freq", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
    ]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _errno_error() -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err))


def attach_raw_tracepoint(prog_fd: int, name: str) -> int:
    """A BPF link holding the program on the raw tracepoint `name`."""
    encoded = ctypes.create_string_buffer(name.encode())
    return bpf(BPF_RAW_TRACEPOINT_OPEN, _RawTracepointAttr(name=ctypes.addressof(encoded), prog_fd=prog_fd))


def _perf_event_open(attr: _PerfEventAttr, cpu: int) -> int:
    attr.size = ctypes.sizeof(attr)
    nr = PERF_EVENT_OPEN_NR.get(platform.machine(), ASM_GENERIC_PERF_EVENT_OPEN_NR)
    fd = _libc().syscall(
        ctypes.c_long(nr),
        ctypes.c_void_p(ctypes.addressof(attr)),
        ctypes.c_long(-1),
        ctypes.c_long(cpu),
        ctypes.c_long(-1),
        ctypes.c_long(PERF_FLAG_FD_CLOEXEC),
    )
    if fd < 0:
        raise _errno_error()
    return int(fd)


def _set_program(event_fd: int, prog_fd: int) -> int:
    try:
        fcntl.ioctl(event_fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(event_fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError:
        os.close(event_fd)
        raise
    return event_fd


def tracepoint_id(category: str, event: str) -> int:
    """The tracepoint's id in tracefs, which perf_event_open takes as its config."""
    for events in TRACEFS_EVENTS_DIRS:
        text = read_text(f"{events}/{category}/{event}/id")
        if text is not None:
            return int(text)
    raise FileNotFoundError(f"no tracepoint {category}:{event} in tracefs")


def attach_tracepoint(prog_fd: int, category: str, event: str) -> int:
    """A perf event on the classic tracepoint holding the program.

    A tracepoint's programs run for every task on every CPU whichever CPU
    the event is opened on: one event, as bcc opens it.
    """
    attr = _PerfEventAttr(
        type=PERF_TYPE_TRACEPOINT,
        config=tracepoint_id(category, event),
        sample_period_or_freq=1,
        sample_type=PERF_SAMPLE_RAW,
        wakeup_events=1,
    )
    return _set_program(_perf_event_open(attr, 0), prog_fd)


def attach_perf_event(prog_fd: int, type_: int, config: int, sample_freq: int, sample_period: int, cpu: int) -> int:
    """A sampling perf event on one CPU that runs the program at each sample."""
    attr = _PerfEventAttr(
        type=type_,
        config=config,
        sample_period_or_freq=sample_freq or sample_period,
        flags=PERF_ATTR_FREQ if sample_freq else 0,
    )
    return _set_program(_perf_event_open(attr, cpu), prog_fd)
