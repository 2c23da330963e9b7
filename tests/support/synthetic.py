"""Hand-made frames with known values, for deterministic UI tests and snapshots."""

from __future__ import annotations

from probes.model.frame import Frame
from probes.sources.processes import ProcessesSample, ProcSample
from probes.sources.system import CpuTimes, MemorySample, Pressure, SystemSample
from support.synthetic_disks import block_io_sample, disks_sample, filesystems_sample
from support.synthetic_offcpu import offcpu_sample

GIB = 1024**3
MIB = 1024**2
S = 1_000_000_000

# (pid, ppid, user, state, name, cmdline, cgroup, cpu ns used in the second, rss MiB, threads, cpu s so far)
PROCESSES = [
    (1, 0, "root", "S", "systemd", "/sbin/init", "/init.scope", 0, 12, 1, 95.0),
    (412, 1, "root", "S", "sshd", "sshd: /usr/sbin/sshd -D", "/system.slice/ssh.service", 10_000_000, 9, 1, 3.2),
    (977, 1, "postgres", "S", "postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql", "/system.slice/postgresql.service", 50_000_000, 210, 6, 4120.5),
    (978, 977, "postgres", "R", "postgres", "postgres: checkpointer", "/system.slice/postgresql.service", 730_000_000, 64, 1, 800.0),
    (1200, 1, "www-data", "D", "nginx", "nginx: worker process", "/system.slice/docker-3f2a9c1b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170.scope", 120_000_000, 48, 4, 61.25),
    (2001, 412, "alice", "S", "bash", "-bash", "/user.slice/user-1000.slice/session-2.scope", 0, 5, 1, 0.4),
    (2002, 2001, "alice", "R", "python3", "python3 train.py --epochs 10", "/user.slice/user-1000.slice/session-2.scope", 990_000_000, 1536, 12, 3605.0),
    (2, 0, "root", "S", "kthreadd", "", "/", 0, 0, 1, 0.0),
]


def cpu_times(cpu_id: int, user: int, system: int, idle: int, iowait: int = 0, irq: int = 0, steal: int = 0) -> CpuTimes:
    return CpuTimes(
        user * S // 100, 0, system * S // 100, idle * S // 100, iowait * S // 100, irq * S // 100, 0,
        steal * S // 100, cpu_id,
    )


def system_sample(t: int) -> SystemSample:
    """t = 0 or 1: the second sample adds one second of known CPU use."""
    cpus = (
        cpu_times(0, 100 + 60 * t, 100 + 20 * t, 1000 + 15 * t, 5 * t),
        cpu_times(1, 100 + 10 * t, 100 + 5 * t, 1000 + 80 * t, 0, 5 * t),
        cpu_times(2, 100 + 90 * t, 100 + 10 * t, 1000, 0),
        cpu_times(3, 100, 100 + 2 * t, 1000 + 88 * t, 0, 0, 10 * t),
    )
    times = [f for f in CpuTimes.__slots__ if f.endswith("_ns")]
    total = CpuTimes(*(sum(getattr(c, f) for c in cpus) for f in times))
    return SystemSample(
        hostname="db-7",
        kernel="6.1.0-test-amd64",
        uptime_s=3 * 86400 + 4 * 3600 + 5 * 60 + t,
        load_avg=(2.35, 1.80, 1.20),
        cpu_total=total,
        cpus=cpus,
        context_switches=1_000_000 + 12_345 * t,
        interrupts=500_000 + 6_789 * t,
        memory=MemorySample(
            total_bytes=16 * GIB,
            free_bytes=2 * GIB,
            available_bytes=9 * GIB,
            buffers_bytes=512 * MIB,
            cached_bytes=6 * GIB,
            swap_total_bytes=4 * GIB,
            swap_free_bytes=3 * GIB,
            shmem_bytes=1 * GIB,
        ),
        page_faults=900_000 + 4_200 * t,
        major_page_faults=1_000 + 3 * t,
        pressure={
            "cpu": Pressure(12.5, 1000, None, None),
            "memory": Pressure(0.5, 100, 0.25, 50),
            "io": None,
        },
    )


def processes_sample(t: int, processes: list[tuple] = PROCESSES) -> ProcessesSample:
    procs = []
    for pid, ppid, user, state, name, cmdline, cgroup, used_ns, rss_mib, threads, cpu_s in processes:
        cpu_ns = int(cpu_s * S) + used_ns * t
        procs.append(
            ProcSample(
                pid=pid, ppid=ppid, state=state, name=name, cmdline=cmdline, user=user, cgroup=cgroup,
                cpu_user_ns=cpu_ns, cpu_system_ns=0, rss_bytes=rss_mib * MIB, num_threads=threads,
                start_time_ns=pid * S,
            )
        )
    return ProcessesSample(tuple(procs), unreadable=0)


# Most boxes: what the GPU pane shows without an NVIDIA driver.
NO_GPU = {"gpu": ("no NVIDIA driver: libnvidia-ml.so not found", "install the NVIDIA driver")}


def frames(
    processes: list[tuple] = PROCESSES, unavailable: dict[str, tuple[str, str]] | None = None, ticks: int = 2,
) -> list[Frame]:
    """Two frames one second apart (or `ticks` frames: every second like the first)."""
    return [
        Frame(
            wall_ns=1_764_000_000 * S + t * S,
            mono_ns=(1000 + t) * S,
            samples={
                "cpu": system_sample(t),
                "procs": processes_sample(t, processes),
                "disks": disks_sample(t),
                "blockio": block_io_sample(t),
                "filesystems": filesystems_sample(t),
                "syscalls": syscalls_sample(t),
                "offcpu": offcpu_sample(t),
            },
            unavailable=NO_GPU if unavailable is None else unavailable,
        )
        for t in range(ticks)
    ]


def syscalls_sample(t: int):
    """The interval's counts: the same every tick (maps are cleared each read)."""
    from probes.sources.syscalls import (
        HIST_SLOTS,
        ErrnoCounts,
        SyscallCounts,
        SyscallsSample,
    )

    def hist(slot: int, calls: int) -> tuple[int, ...]:
        return tuple(calls if i == slot else 0 for i in range(HIST_SLOTS))

    rows = [
        # pid, nr, name, calls, errors, total ns, log2 slot of most calls
        (977, 0, "read", 42_000, 0, 42_000 * 3_000, 11),
        (977, 232, "epoll_wait", 9_000, 0, 9_000 * 900_000, 19),
        (978, 17, "pread64", 12_500, 0, 12_500 * 40_000, 15),
        (978, 74, "fsync", 300, 0, 300 * 4_000_000, 21),
        (1200, 232, "epoll_wait", 5_100, 0, 5_100 * 2_000_000, 20),
        (1200, 45, "recvfrom", 8_000, 2_400, 8_000 * 1_500, 10),
        (2002, 1, "write", 1_200, 0, 1_200 * 20_000, 14),
    ]
    return SyscallsSample(
        syscalls=tuple(SyscallCounts(pid, nr, name, c, e, ns, hist(slot, c)) for pid, nr, name, c, e, ns, slot in rows),
        errnos=(ErrnoCounts(1200, 45, "recvfrom", 11, "EAGAIN", 2_400),),
        comms={977: "postgres", 978: "postgres", 1200: "nginx", 2002: "python3"},
        lost={"stats_map_full": 0, "errno_map_full": 0, "comm_map_full": 0, "exit_without_enter": 0},
        events=78_100,
        target_pid=None,
    )
