"""A hand-made off-CPU sample with known values, for deterministic UI tests and snapshots.

The processes are those of tests/support/synthetic.py (postgres, its checkpointer,
nginx, a python3 training job), so the pane and the process table agree.
"""

from __future__ import annotations

from probes.sources.offcpu import (
    HIST_SLOTS,
    LOST_REASONS,
    BlockingStack,
    OffCpuSample,
    OffCpuTime,
)

MS = 1_000_000

SYSCALL = ("entry_SYSCALL_64_after_hwframe", "do_syscall_64")
EPOLL_USER = ("main", "PostmasterMain", "ServerLoop", "WaitEventSetWait", "epoll_wait")
EPOLL_KERNEL = (*SYSCALL, "__x64_sys_epoll_wait", "do_epoll_wait", "ep_poll", "schedule_hrtimeout_range")
FSYNC_USER = ("main", "CheckpointerMain", "CheckPointGuts", "pg_fsync", "fdatasync")
FSYNC_KERNEL = (*SYSCALL, "__x64_sys_fdatasync", "ext4_sync_file", "jbd2_complete_transaction", "jbd2_log_wait_commit")
READ_KERNEL = (*SYSCALL, "ksys_pread64", "vfs_read", "ext4_file_read_iter", "filemap_read", "folio_wait_bit_common")
FUTEX_USER = ("start_thread", "worker_loop", "pthread_cond_wait", "futex_wait")
FUTEX_KERNEL = (*SYSCALL, "__x64_sys_futex", "do_futex", "futex_wait", "futex_wait_queue")
NGINX_USER = ("main", "ngx_worker_process_cycle", "ngx_process_events_and_timers", "ngx_epoll_process_events", "epoll_wait")


def hist(**slots: int) -> tuple[int, ...]:
    """A log2 histogram from s<slot>=count."""
    values = [0] * HIST_SLOTS
    for name, count in slots.items():
        values[int(name[1:])] = count
    return tuple(values)


def waits_ns(buckets: tuple[int, ...]) -> int:
    """A sum of run-queue waits that fits their buckets: each in the middle of its [2**i, 2**(i+1)) ns."""
    return sum(n * 3 * (1 << i) // 2 for i, n in enumerate(buckets))


def offcpu_sample(t: int) -> OffCpuSample:
    """The interval's blocks: the same every tick (the probe's maps are cleared each read)."""
    times = [
        # pid, state, off-CPU ms in the interval, blocks
        (977, "S", 2_400, 1_200),
        (977, "D", 300, 60),
        (978, "D", 820, 41),
        (978, "S", 100, 10),
        (1200, "S", 3_600, 900),
        (1200, "R", 40, 12),
        (2002, "S", 6_100, 3_050),
        (2002, "R", 420, 210),
    ]
    stacks = [
        BlockingStack(977, "S", 2_100 * MS, 1_050, EPOLL_USER, EPOLL_KERNEL),
        BlockingStack(977, "D", 300 * MS, 60, ("main", "PostgresMain", "FileRead", "pread64"), READ_KERNEL),
        BlockingStack(977, "S", 300 * MS, 150, (), (), "not captured"),
        BlockingStack(978, "D", 820 * MS, 41, FSYNC_USER, FSYNC_KERNEL),
        BlockingStack(978, "S", 100 * MS, 10, ("main", "CheckpointerMain", "WaitLatch", "epoll_wait"), EPOLL_KERNEL),
        BlockingStack(1200, "S", 3_600 * MS, 900, NGINX_USER, EPOLL_KERNEL),
        BlockingStack(2002, "S", 5_900 * MS, 2_950, FUTEX_USER, FUTEX_KERNEL),
        BlockingStack(2002, "S", 200 * MS, 100, ("main", "DataLoader.__next__", "read"), READ_KERNEL),
    ]
    rq_hist = hist(s11=40, s12=300, s13=900, s14=1_400, s15=700, s16=260, s17=90, s20=35, s22=18)
    rq_hists = {
        977: hist(s12=100, s13=400, s14=500, s15=200),
        978: hist(s13=30, s14=11),
        1200: hist(s12=200, s13=300, s14=350, s15=50),
        2002: hist(s14=300, s15=450, s16=260, s17=90, s20=35, s22=18),
    }
    return OffCpuSample(
        times=tuple(OffCpuTime(pid, state, ms * MS, blocks) for pid, state, ms, blocks in times),
        stacks=tuple(stacks),
        rq_hist=rq_hist,
        rq_hists=rq_hists,
        # 3200 blocks had their stacks taken; 12 of them outlived their epoch
        stack_blocks=3_200,
        stack_lost_blocks=12,
        rq_wait_ns=waits_ns(rq_hist),
        rq_wait_ns_by_pid={pid: waits_ns(h) for pid, h in rq_hists.items()},
        comms={977: "postgres", 978: "postgres", 1200: "nginx", 2002: "python3"},
        lost=dict.fromkeys(LOST_REASONS, 0),
        short_blocks=48_000,
        short_block_ns=950 * MS,
        min_block_ns=MS,
        target_pid=None,
    )
