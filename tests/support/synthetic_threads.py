"""Hand-made frames of a drill-down into python3 (2002) of tests/support/synthetic.py, with its threads.

The threads probe's counters, and the eBPF probes counting 2002's threads
one by one (their focus), with known values per second.
"""

from __future__ import annotations

import dataclasses

from probes.model.frame import Frame
from probes.sources.offcpu import ThreadOffCpuTime
from probes.sources.syscalls import ThreadSyscallCounts
from probes.sources.threads import ThreadSample, ThreadsSample
from support.synthetic import frames

PID = 2002
MS = 1_000_000
S = 1_000_000_000

# tid, name, state, last CPU, on-CPU ms per second, run-queue wait ms per second
THREADS = [
    (2002, "python3", "S", 0, 20, 1),
    (2010, "pt_main_thread", "R", 2, 930, 45),
    (2011, "pt_data_0", "S", 1, 30, 2),
    (2012, "pt_data_1", "D", 3, 10, 0),
]
# tid, state, off-CPU ms in the interval, blocks
OFFCPU = [
    (2002, "S", 980, 4),
    (2011, "S", 900, 450),
    (2012, "D", 700, 35),
    (2012, "S", 250, 20),
    # exited within the interval: no longer in /proc, named by nobody
    (2013, "S", 40, 2),
]
# tid, calls, errors, total latency ns
SYSCALLS = [
    (2002, 12, 0, 12 * 80 * MS),
    (2011, 9_000, 300, 9_000 * 20_000),
    (2012, 1_200, 0, 1_200 * 600_000),
]


def threads_sample(t: int) -> ThreadsSample:
    return ThreadsSample(
        PID,
        tuple(
            ThreadSample(tid, name, state, cpu, tid * S, 50 * S + cpu_ms * MS * t, 2 * S + delay_ms * MS * t)
            for tid, name, state, cpu, cpu_ms, delay_ms in THREADS
        ),
    )


def drill_frames(focus: bool = True) -> list[Frame]:
    """frames() with 2002's threads; `focus`: the eBPF probes counted them one by one."""
    out = []
    for t, frame in enumerate(frames()):
        samples = dict(frame.samples)
        samples["threads"] = threads_sample(t)
        if focus:
            samples["offcpu"] = dataclasses.replace(
                samples["offcpu"],
                focus_pid=PID,
                threads=tuple(ThreadOffCpuTime(PID, tid, state, ms * MS, n) for tid, state, ms, n in OFFCPU),
            )
            samples["syscalls"] = dataclasses.replace(
                samples["syscalls"],
                focus_pid=PID,
                threads=tuple(ThreadSyscallCounts(PID, tid, c, e, ns) for tid, c, e, ns in SYSCALLS),
            )
        out.append(dataclasses.replace(frame, samples=samples))
    return out
