"""Hand-made disks, block I/O and filesystems samples: a busy database disk, an idle one, a filesystem near full."""

from __future__ import annotations

from probes.sources.block_io import (
    HIST_SLOTS,
    LOST_REASONS,
    BlockIoCounts,
    BlockIoSample,
    DeviceBlockIo,
    ProcessBlockIo,
)
from probes.sources.disks import DisksSample, Placement, parse_diskstats
from probes.sources.filesystems import FilesystemsSample, MountedFilesystem, Space

GIB = 1024**3
S = 1_000_000_000

PLACES = {
    "nvme0n1": Placement("nvme"), "nvme0n1p1": Placement("nvme", "nvme0n1"), "nvme0n1p2": Placement("nvme", "nvme0n1"),
    "sda": Placement("sd"), "sda1": Placement("sd", "sda"), "dm-0": Placement("dm", None, "vg0-root"),
    "loop0": Placement("loop"),
}
# One second apart. nvme0n1p2 (the database) reads 800/s and writes 2400/s
# with a deep queue: saturated. dm-0 on top of it, sda writes a little, its
# partition and loop0 idle.
DISKSTATS = (
    """\
 259       0 nvme0n1 100000 10 8000000 50000 300000 50 24000000 900000 0 400000 950000 0 0 0 0 1000 500
 259       1 nvme0n1p1 500 0 4000 100 10 0 80 5 0 90 105 0 0 0 0 0 0
 259       2 nvme0n1p2 99500 10 7996000 49900 299990 50 23999920 899995 0 399910 949895 0 0 0 0 0 0
   8       0 sda 2000 0 160000 3000 5000 100 400000 20000 0 15000 23000 0 0 0 0 10 5
   8       1 sda1 2000 0 160000 3000 5000 100 400000 20000 0 15000 23000 0 0 0 0 0 0
 254       0 dm-0 99000 0 7990000 52000 299000 0 23990000 950000 0 399000 1002000 0 0 0 0 0 0
   7       0 loop0 120 0 960 30 0 0 0 0 0 30 30 0 0 0 0 0 0
""",
    """\
 259       0 nvme0n1 100800 10 8102400 54000 302400 50 24614400 930000 12 400980 984000 0 0 0 0 1010 505
 259       1 nvme0n1p1 500 0 4000 100 10 0 80 5 0 90 105 0 0 0 0 0 0
 259       2 nvme0n1p2 100300 10 8098400 53900 302390 50 24614320 929995 12 400890 983895 0 0 0 0 0 0
   8       0 sda 2000 0 160000 3000 5040 100 401280 20120 0 15060 23120 0 0 0 0 11 5
   8       1 sda1 2000 0 160000 3000 5040 100 401280 20120 0 15060 23120 0 0 0 0 0 0
 254       0 dm-0 99800 0 8092400 56100 301400 0 24604400 981000 12 399980 1036000 0 0 0 0 0 0
   7       0 loop0 120 0 960 30 0 0 0 0 0 30 30 0 0 0 0 0 0
""",
)


def diskstats_text(t: int) -> str:
    """DISKSTATS at second t: the first second's counts again every second after."""
    if t < len(DISKSTATS):
        return DISKSTATS[t]
    lines = []
    for first, second in zip(DISKSTATS[0].splitlines(), DISKSTATS[1].splitlines(), strict=True):
        a, b = first.split(), second.split()
        counts = [str(int(x) + t * (int(y) - int(x))) for x, y in zip(a[3:], b[3:], strict=True)]
        # the in-flight count (field 12) is a level, not a counter
        counts[8] = b[11]
        lines.append(" ".join([*a[:3], *counts]))
    return "\n".join(lines) + "\n"


def disks_sample(t: int) -> DisksSample:
    return DisksSample(parse_diskstats(diskstats_text(t), PLACES), (1000 + t) * S)


def filesystems_sample(t: int) -> FilesystemsSample:
    def space(size_gib: int, used_gib: float, reserve_gib: float, inodes: int, inodes_used: int) -> Space:
        size, used, reserve = size_gib * GIB, int(used_gib * GIB), int(reserve_gib * GIB)
        return Space(size, size - used, size - used - reserve, inodes, inodes - inodes_used)

    return FilesystemsSample(
        (
            MountedFilesystem(24, "/", "/dev/mapper/vg0-root", "ext4", 254, 0, False, space(100, 41.5, 5, 6_553_600, 412_000)),
            MountedFilesystem(
                31, "/var/lib/postgresql", "/dev/nvme0n1p2", "xfs", 259, 2, False,
                space(500, 462 + 0.002 * t, 0, 250_000_000, 1_200_000),
            ),
            MountedFilesystem(33, "/boot/efi", "/dev/nvme0n1p1", "vfat", 259, 1, False, space(1, 0.01, 0, 0, 0)),
            MountedFilesystem(35, "/mnt/backup", "/dev/sda1", "ext4", 8, 1, False, space(2000, 1100, 100, 122_000_000, 50_000)),
        ),
        (1000 + t) * S,
    )


def block_io_sample(t: int) -> BlockIoSample:
    """The interval's requests (the same every tick): nvme0n1's 800 reads and 2400 writes a second, mostly postgres's."""
    def counts(op: str, requests: int, size: int, slot: int, tail_slot: int) -> BlockIoCounts:
        tail = requests // 50
        hist = tuple(requests - tail if i == slot else tail if i == tail_slot else 0 for i in range(HIST_SLOTS))
        mean_ns = ((requests - tail) * (3 << slot >> 1) + tail * (3 << tail_slot >> 1)) // requests
        return BlockIoCounts(op, requests, requests * size, requests * mean_ns, hist)

    return BlockIoSample(
        devices=(
            DeviceBlockIo("nvme0n1", 259, 0, counts("read", 800, 65536, 17, 21)),
            DeviceBlockIo("nvme0n1", 259, 0, counts("write", 2400, 131072, 16, 20)),
            DeviceBlockIo("sda", 8, 0, counts("write", 40, 16384, 19, 23)),
        ),
        processes=(
            ProcessBlockIo(978, counts("read", 800, 65536, 17, 21)),
            ProcessBlockIo(978, counts("write", 2000, 131072, 16, 20)),
            ProcessBlockIo(2002, counts("write", 400, 131072, 16, 20)),
            ProcessBlockIo(131, counts("write", 40, 16384, 19, 23)),
        ),
        comms={978: "postgres", 2002: "python3", 131: "kworker/u4:2"},
        lost=dict.fromkeys(LOST_REASONS, 0),
        mono_ns=(1000 + t) * S,
    )
