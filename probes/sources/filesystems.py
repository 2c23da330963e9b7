"""The "filesystems" probe: each mounted real filesystem's space and inodes, as df shows them.

Mounts come from /proc/self/mountinfo (the mounts orac's own mount
namespace sees), space and inodes from statvfs(2). What df leaves out is
left out here: pseudo filesystems (proc, sysfs, cgroup...), autofs (whose
statvfs would trigger the automount), filesystems of size 0, and second
mounts of one filesystem (bind mounts, btrfs subvolumes of one device).
Memory-backed, layered and read-only image filesystems (tmpfs, overlay,
squashfs...) are shown only when asked for (`include_virtual`): a box has
many of them (one overlay per container, one squashfs per snap, 100 % full
by construction) and they rarely matter in a disk incident.

statvfs on a local filesystem reads counters the kernel keeps in memory and
returns at once; on a network or FUSE filesystem it asks a server or a
user-space daemon, which can hang for minutes (a dead NFS server). Those are
asked on a daemon thread each and waited for only REMOTE_TIMEOUT_S: one that
has not answered shows as not responding, and is not asked again until its
call returns, so a hung mount costs the collector that wait once and then
nothing, and never holds up orac's exit.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from probes.contract import ProbeSpec, ProbeUnavailable
from probes.host.procfs import read_bytes

# Used % (of blocks or inodes) from which a filesystem is flagged near full:
# df's Use% that most alerting starts to warn at (Nagios check_disk's usual
# critical level). Read-only mounts are never flagged: nothing can fill them.
NEAR_FULL_PERCENT = 90.0
# How long a sample waits for network and FUSE filesystems' statvfs.
REMOTE_TIMEOUT_S = 0.2

# No storage behind them: kernel interfaces, and autofs, whose statvfs
# would mount what it stands for.
PSEUDO_TYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "rootfs", "rpc_pipefs",
    "securityfs", "selinuxfs", "smackfs", "sysfs", "tracefs", "nfsd", "fuse.lxcfs", "fuse.gvfsd-fuse",
    "fuse.portal", "fuse.xdg-document-portal",
})
# Shown only with include_virtual: in memory, layered over another
# filesystem, or read-only images.
VIRTUAL_TYPES = frozenset({
    "tmpfs", "ramfs", "overlay", "aufs", "fuse.fuse-overlayfs", "squashfs", "erofs", "fuse.snapfuse",
})
# Answered by a server: statvfs may hang (FUSE types are matched by prefix).
REMOTE_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "coda", "lustre", "gpfs",
    "beegfs", "ocfs2", "gfs2", "virtiofs",
})

_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> bytes:
    """Undo mountinfo's octal escapes (a space in a mount point is written \\040)."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of /proc/self/mountinfo (proc(5))."""

    mount_id: int
    major: int
    minor: int
    # the directory of the filesystem this mount shows ("/" unless a bind of a subdirectory)
    root: str
    mount_point: str
    fs_type: str
    source: str
    read_only: bool
    # the mount point as the kernel spells it, for statvfs: any bytes, not only UTF-8
    path: bytes


def parse_mountinfo(data: bytes) -> tuple[MountEntry, ...]:
    """Every mount of mountinfo text; malformed lines are skipped.

    Fields: mount id, parent id, major:minor, root, mount point, mount
    options, optional fields ended by "-", then type, source and the
    superblock's options. A mount is read-only when its own options or its
    superblock's say "ro".
    """
    entries = []
    for line in data.splitlines():
        fields = line.split(b" ")
        try:
            dash = fields.index(b"-", 6)
            major, minor = fields[2].split(b":")
            fs_type, source, super_options = fields[dash + 1 : dash + 4]
            mount_id = int(fields[0])
            dev = (int(major), int(minor))
        except ValueError:
            continue
        path = unescape(fields[4])
        options = fields[5].split(b",") + super_options.split(b",")
        entries.append(MountEntry(
            mount_id=mount_id, major=dev[0], minor=dev[1],
            root=unescape(fields[3]).decode("utf-8", "replace"),
            mount_point=path.decode("utf-8", "replace"),
            fs_type=fs_type.decode("utf-8", "replace"),
            source=unescape(source).decode("utf-8", "replace"),
            read_only=b"ro" in options,
            path=path,
        ))
    return tuple(entries)


def is_remote(fs_type: str) -> bool:
    """Whether statvfs asks a server or a FUSE daemon, and so may hang."""
    return fs_type in REMOTE_TYPES or fs_type in ("fuse", "fuseblk") or fs_type.startswith("fuse.")


def select_filesystems(entries: Iterable[MountEntry], include_virtual: bool = False) -> list[MountEntry]:
    """The mounts to show: real filesystems, each once.

    A filesystem mounted more than once (same device number) is shown at
    the mount of its whole tree (root "/") with the shortest mount point,
    the one df shows.
    """
    candidates = [
        e for e in entries
        if e.fs_type not in PSEUDO_TYPES and (include_virtual or e.fs_type not in VIRTUAL_TYPES)
    ]
    chosen: dict[tuple[int, int], MountEntry] = {}
    for entry in candidates:
        dev = (entry.major, entry.minor)
        known = chosen.get(dev)
        if known is None or _preferred(entry, known):
            chosen[dev] = entry
    kept = {e.mount_id for e in chosen.values()}
    return [e for e in candidates if e.mount_id in kept]


def _preferred(entry: MountEntry, known: MountEntry) -> bool:
    return (entry.root != "/", len(entry.mount_point)) < (known.root != "/", len(known.mount_point))


@dataclass(frozen=True, slots=True)
class Space:
    """statvfs's counts, in bytes (f_frsize units) and inodes."""

    size_bytes: int
    # f_bfree: free blocks, those reserved for root included
    free_bytes: int
    # f_bavail: what an unprivileged user can still write
    available_bytes: int
    inodes: int
    inodes_free: int


@dataclass(frozen=True, slots=True)
class MountedFilesystem:
    """One real mounted filesystem at one tick."""

    mount_id: int
    mount_point: str
    source: str
    fs_type: str
    major: int
    minor: int
    read_only: bool
    # None: a network or FUSE filesystem that did not answer statvfs in time
    space: Space | None


@dataclass(frozen=True, slots=True)
class FilesystemsSample:
    filesystems: tuple[MountedFilesystem, ...]
    # time.monotonic_ns() as the mounts were listed
    mono_ns: int | None = None


def space_of(st: os.statvfs_result) -> Space:
    # f_frsize is the unit of the block counts; f_bsize is only the
    # preferred I/O size (df uses f_frsize, falling back where it is 0).
    unit = st.f_frsize or st.f_bsize
    return Space(st.f_blocks * unit, st.f_bfree * unit, st.f_bavail * unit, st.f_files, st.f_ffree)


class _Call:
    """A statvfs on its own daemon thread, so that one that hangs hangs only that thread."""

    def __init__(self, statvfs: Callable[[bytes], os.statvfs_result], path: bytes) -> None:
        self.done = threading.Event()
        self.result: os.statvfs_result | None = None
        self.failed = False
        threading.Thread(target=self._run, args=(statvfs, path), name="orac-statvfs", daemon=True).start()

    def _run(self, statvfs: Callable[[bytes], os.statvfs_result], path: bytes) -> None:
        try:
            self.result = statvfs(path)
        except OSError:
            self.failed = True
        finally:
            self.done.set()


class FilesystemsProbe:
    """Samples the space and inodes of every real mounted filesystem."""

    name: ClassVar[str] = "filesystems"

    def __init__(
        self,
        proc: str = "/proc",
        include_virtual: bool = False,
        statvfs: Callable[[bytes], os.statvfs_result] = os.statvfs,
        remote_timeout_s: float = REMOTE_TIMEOUT_S,
    ) -> None:
        self._mountinfo = f"{proc}/self/mountinfo"
        self.include_virtual = include_virtual
        self._statvfs = statvfs
        self._timeout_s = remote_timeout_s
        # mount id -> the statvfs call of a network or FUSE filesystem that
        # had not returned when last waited for
        self._pending: dict[int, _Call] = {}

    def start(self) -> None:
        if read_bytes(self._mountinfo) is None:
            raise ProbeUnavailable(f"{self._mountinfo} is not readable", "mount procfs on /proc")

    def sample(self) -> FilesystemsSample:
        mono_ns = time.monotonic_ns()
        mounts = parse_mountinfo(read_bytes(self._mountinfo, whole=True) or b"")
        entries = select_filesystems(mounts, self.include_virtual)
        calls: dict[int, _Call] = {}
        for entry in entries:
            if is_remote(entry.fs_type):
                pending = self._pending.get(entry.mount_id)
                if pending is None or pending.done.is_set():
                    pending = _Call(self._statvfs, entry.path)
                calls[entry.mount_id] = pending
        deadline = time.monotonic() + self._timeout_s
        self._pending = {}
        out = []
        for entry in entries:
            call = calls.get(entry.mount_id)
            if call is None:
                try:
                    st: os.statvfs_result | None = self._statvfs(entry.path)
                except OSError:
                    # Unmounted since mountinfo was read, or not ours to see.
                    continue
            elif call.done.wait(max(0.0, deadline - time.monotonic())):
                if call.failed:
                    continue
                st = call.result
            else:
                self._pending[entry.mount_id] = call
                st = None
            if st is not None and st.f_blocks == 0:
                # No size (a FUSE filesystem that reports none): df hides these too.
                continue
            out.append(MountedFilesystem(
                mount_id=entry.mount_id, mount_point=entry.mount_point, source=entry.source,
                fs_type=entry.fs_type, major=entry.major, minor=entry.minor, read_only=entry.read_only,
                space=None if st is None else space_of(st),
            ))
        return FilesystemsSample(tuple(out), mono_ns)

    def stop(self) -> None:
        # A call still hanging stays on its daemon thread; nothing waits for it.
        self._pending = {}


@dataclass(frozen=True, slots=True)
class FilesystemView:
    """One filesystem's row, with df's definitions.

    Attributes:
        size_bytes: df's Size: f_blocks x f_frsize.
        used_bytes: df's Used: (f_blocks - f_bfree) x f_frsize.
        free_bytes: f_bfree x f_frsize, root's reserve included.
        available_bytes: df's Avail: f_bavail x f_frsize, what an
            unprivileged user can still write.
        used_percent: df's Use%: used / (used + available) x 100, so 100 %
            once only root's reserve is left (df rounds it up to a whole
            number; this is not rounded).
        inodes_used_percent: df -i's IUse%: (f_files - f_ffree) / f_files x
            100; None where the filesystem has no fixed inode count (btrfs
            reports 0, df shows "-").
        growth_bytes_per_s: the change of used_bytes since the last sample
            per second (negative when space was freed); None for a
            filesystem new since then.
        near_full: used_percent or inodes_used_percent at least
            NEAR_FULL_PERCENT on a writable mount.

    The space fields are None for a network or FUSE filesystem that did not
    answer in time (`responding` False).
    """

    mount_point: str
    source: str
    fs_type: str
    read_only: bool
    responding: bool
    size_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None
    available_bytes: int | None
    used_percent: float | None
    inodes_used_percent: float | None
    growth_bytes_per_s: float | None
    near_full: bool


@dataclass(frozen=True, slots=True)
class FilesystemsView:
    filesystems: tuple[FilesystemView, ...]


def used_percent(space: Space) -> float | None:
    """df's Use%: used / (used + available) x 100, unrounded; None when both are 0."""
    used = space.size_bytes - space.free_bytes
    total = used + space.available_bytes
    return used / total * 100.0 if total > 0 else None


def inodes_used_percent(space: Space) -> float | None:
    return (space.inodes - space.inodes_free) / space.inodes * 100.0 if space.inodes > 0 else None


def filesystem_view(prev: MountedFilesystem | None, curr: MountedFilesystem, dt_s: float) -> FilesystemView:
    space = curr.space
    if space is None:
        return FilesystemView(
            mount_point=curr.mount_point, source=curr.source, fs_type=curr.fs_type, read_only=curr.read_only,
            responding=False, size_bytes=None, used_bytes=None, free_bytes=None, available_bytes=None,
            used_percent=None, inodes_used_percent=None, growth_bytes_per_s=None, near_full=False,
        )
    used = space.size_bytes - space.free_bytes
    growth = None
    if prev is not None and prev.space is not None and dt_s > 0:
        growth = (used - (prev.space.size_bytes - prev.space.free_bytes)) / dt_s
    pct, ipct = used_percent(space), inodes_used_percent(space)
    near_full = not curr.read_only and any(p is not None and p >= NEAR_FULL_PERCENT for p in (pct, ipct))
    return FilesystemView(
        mount_point=curr.mount_point, source=curr.source, fs_type=curr.fs_type, read_only=curr.read_only,
        responding=True, size_bytes=space.size_bytes, used_bytes=used, free_bytes=space.free_bytes,
        available_bytes=space.available_bytes, used_percent=pct, inodes_used_percent=ipct,
        growth_bytes_per_s=growth, near_full=near_full,
    )


def derive_filesystems(prev: FilesystemsSample, curr: FilesystemsSample, dt_s: float) -> FilesystemsView:
    """Every filesystem of `curr`; one unmounted since `prev` is simply not there.

    A mount is matched to its earlier reading by mount id and device
    number: a filesystem mounted again at the same place is a new one.
    """
    before = {(f.mount_id, f.major, f.minor): f for f in prev.filesystems}
    return FilesystemsView(tuple(
        filesystem_view(before.get((f.mount_id, f.major, f.minor)), f, dt_s) for f in curr.filesystems
    ))


FILESYSTEMS: ProbeSpec[FilesystemsSample, FilesystemsView] = ProbeSpec(FilesystemsProbe.name, FilesystemsSample, FilesystemsView, derive_filesystems, FilesystemsProbe)
