"""The bpf(2) system call through ctypes: BPF maps by file descriptor, without bcc.

orac's own process reads and clears the maps of programs that a short-lived
loader child (probes/ebpf/loader.py) compiled with bcc and handed over as
file descriptors. Importing bcc costs about 64 MiB and compiling 60 MiB more
that are never given back; the few map operations a probe needs each tick
are one system call each, so they need nothing of bcc.

Only what the kernel's uapi header (linux/bpf.h) fixes is used here: command
numbers and the layout of `union bpf_attr` and `struct bpf_map_info`. Those
are ABI: they only grow at the end, and the kernel accepts a shorter attr
whose missing tail it reads as zeros.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from probes.host.procfs import read_text

# bpf(2)'s number where it is not the asm-generic one (280). Every
# architecture added since 2014 uses asm-generic numbers.
BPF_SYSCALL_NR = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "riscv64": 280,
    "loongarch64": 280,
    "mips64": 315,
}
ASM_GENERIC_BPF_NR = 280

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_TASK_FD_QUERY = 20
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_MAP_DELETE_BATCH = 27
BPF_ENABLE_STATS = 32

# enum bpf_stats_type
BPF_STATS_RUN_TIME = 0

# enum bpf_map_type: the ones orac's programs use, and every per-CPU kind
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
PER_CPU_MAP_TYPES = frozenset(
    {
        BPF_MAP_TYPE_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_LRU_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)

# update flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

BPF_OBJ_NAME_LEN = 16
ENOTSUPP = 524  # the kernel's own "not supported", not in Python's errno


def parse_cpu_ranges(text: str) -> int:
    """How many CPUs a list such as "0-3,8-11" names."""
    count = 0
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    return count


def possible_cpus() -> int:
    """CPUs the kernel could bring online: per-CPU maps hold one copy for each."""
    text = read_text("/sys/devices/system/cpu/possible")
    return parse_cpu_ranges(text) if text else os.cpu_count() or 1


# ---- union bpf_attr, the parts used here ----------------------------------------


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # next_key for BPF_MAP_GET_NEXT_KEY
        ("flags", ctypes.c_uint64),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info; the kernel fills what fits."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _LinkInfo(ctypes.Structure):
    """The head of struct bpf_link_info (type, id, prog_id), then its union, unread."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("rest", ctypes.c_uint8 * 64),
    ]


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info, up to its run time counters.

    The arrays it can point to (instructions, map ids, line info) stay
    unasked: their pointers and counts are zero.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
    ]


class _GetIdAttr(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    ]


class _TaskFdQueryAttr(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("fd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("buf_len", ctypes.c_uint32),
        ("buf", ctypes.c_uint64),
        ("prog_id", ctypes.c_uint32),
        ("fd_type", ctypes.c_uint32),
        ("probe_offset", ctypes.c_uint64),
        ("probe_addr", ctypes.c_uint64),
    ]


class _EnableStatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@lru_cache(maxsize=1)
def bpf_syscall_nr() -> int:
    """bpf(2)'s number on this machine's architecture."""
    machine = platform.machine()
    if machine in BPF_SYSCALL_NR:
        return BPF_SYSCALL_NR[machine]
    from probes.ebpf.syscall_names import syscall_table

    return next((n for n, name in syscall_table().items() if name == "bpf"), ASM_GENERIC_BPF_NR)


def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """Call bpf(cmd, &attr, sizeof attr).

    Returns:
        The call's non-negative result (a new fd for some commands).

    Raises:
        OSError: with the call's errno.
    """
    # syscall(2) reads its arguments as longs.
    res = _libc().syscall(
        ctypes.c_long(bpf_syscall_nr()),
        ctypes.c_long(cmd),
        ctypes.c_void_p(ctypes.addressof(attr)),
        ctypes.c_long(ctypes.sizeof(attr)),
    )
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(res)


def _address(buffer: bytes | ctypes.Array[ctypes.c_char] | None) -> int:
    """The address of a buffer for the kernel to read (bytes) or write (a ctypes array)."""
    if buffer is None:
        return 0
    if isinstance(buffer, bytes):
        # Points into the bytes object itself, which the caller keeps alive over the call.
        return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0
    return ctypes.addressof(buffer)


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the kernel says of a map (BPF_OBJ_GET_INFO_BY_FD)."""

    type: int
    id: int
    key_size: int
    value_size: int  # of one CPU's copy in a per-CPU map
    max_entries: int
    flags: int
    name: str  # the kernel keeps the first 15 bytes


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return MapInfo(
        info.type,
        info.id,
        info.key_size,
        info.value_size,
        info.max_entries,
        info.map_flags,
        info.name.decode("utf-8", "replace"),
    )


def link_prog_id(fd: int) -> int:
    """The id of the program a BPF link (such as a raw tracepoint attachment) holds."""
    info = _LinkInfo()
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return int(info.prog_id)


def attached_prog_id(fd: int) -> int:
    """The id of the program that this process's descriptor `fd` attaches.

    BPF_TASK_FD_QUERY answers for a raw tracepoint's link and for a
    tracepoint's or kprobe's perf event alike; OSError for anything else
    (a perf event sampling the CPU, which the kernel does not report).
    """
    attr = _TaskFdQueryAttr(pid=os.getpid(), fd=fd)
    bpf(BPF_TASK_FD_QUERY, attr)
    return int(attr.prog_id)


@dataclass(frozen=True, slots=True)
class ProgRunTime:
    """A program's run time counters (BPF_OBJ_GET_INFO_BY_FD), zero while the kernel's BPF stats are off."""

    id: int
    name: str
    run_time_ns: int
    run_cnt: int


def prog_run_time(prog_id: int) -> ProgRunTime:
    """Open the program by id just long enough to read its counters: a kept descriptor would keep it loaded."""
    fd = bpf(BPF_PROG_GET_FD_BY_ID, _GetIdAttr(id=prog_id))
    try:
        info = _ProgInfo()
        bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
    finally:
        os.close(fd)
    return ProgRunTime(int(info.id), info.name.decode("utf-8", "replace"), int(info.run_time_ns), int(info.run_cnt))


def enable_run_time_stats() -> int:
    """Turn on the kernel's BPF run time stats for as long as the returned descriptor stays open.

    BPF_ENABLE_STATS counts holders, so closing it (or orac's exit, however
    it ends) gives `kernel.bpf_stats_enabled` back its old value, as bpftop
    relies on.
    """
    return bpf(BPF_ENABLE_STATS, _EnableStatsAttr(type=BPF_STATS_RUN_TIME))


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int, name: str = "") -> int:
    """A new map's fd (BPF_MAP_CREATE); the probes get theirs from the loader, tests make their own."""
    attr = _MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_name=name.encode()[: BPF_OBJ_NAME_LEN - 1],
    )
    return bpf(BPF_MAP_CREATE, attr)


class BpfMap:
    """One BPF map by file descriptor, with keys and values as bytes.

    A per-CPU map's value is every possible CPU's copy back to back, each
    padded to 8 bytes, as the kernel reads and writes them.

    Args:
        fd: the map's descriptor; the object owns it and `close` closes it.
        name: the map's name in the program (the kernel keeps only 15 bytes).
        info: what the kernel says of the map; asked for when not given.
    """

    def __init__(self, fd: int, name: str | None = None, info: MapInfo | None = None) -> None:
        self.fd = fd
        self.info = info if info is not None else map_info(fd)
        self.name = name if name is not None else self.info.name
        self.key_size = self.info.key_size
        self.per_cpu = self.info.type in PER_CPU_MAP_TYPES
        if self.per_cpu:
            self.cpus = possible_cpus()
            self.value_size = (self.info.value_size + 7) // 8 * 8 * self.cpus
        else:
            self.cpus = 1
            self.value_size = self.info.value_size
        self.max_entries = self.info.max_entries

    def __repr__(self) -> str:
        return f"BpfMap({self.name!r}, fd={self.fd}, id={self.info.id}, type={self.info.type})"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _check(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"{self.name}: key of {len(key)} bytes, the map's are {self.key_size}")

    def lookup(self, key: bytes) -> bytes | None:
        """The value at `key`, or None where there is none."""
        self._check(key)
        value = ctypes.create_string_buffer(self.value_size)
        attr = _ElemAttr(map_fd=self.fd, key=_address(key), value=ctypes.addressof(value))
        try:
            bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except FileNotFoundError:
            return None
        return value.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._check(key)
        if len(value) != self.value_size:
            raise ValueError(f"{self.name}: value of {len(value)} bytes, the map's are {self.value_size}")
        bpf(BPF_MAP_UPDATE_ELEM, _ElemAttr(map_fd=self.fd, key=_address(key), value=_address(value), flags=flags))

    def delete(self, key: bytes) -> bool:
        """Delete `key`; False where it was not there."""
        self._check(key)
        try:
            bpf(BPF_MAP_DELETE_ELEM, _ElemAttr(map_fd=self.fd, key=_address(key)))
        except FileNotFoundError:
            return False
        return True

    def next_key(self, key: bytes | None) -> bytes | None:
        """The key after `key` (the first for None), or None after the last."""
        if key is not None:
            self._check(key)
        out = ctypes.create_string_buffer(self.key_size)
        attr = _ElemAttr(map_fd=self.fd, key=_address(key), value=ctypes.addressof(out))
        try:
            bpf(BPF_MAP_GET_NEXT_KEY, attr)
        except FileNotFoundError:
            return None
        return out.raw

    def clear(self) -> None:
        """Delete every entry: all keys first, since deleting under a hash map's key walk can restart it."""
        for key in list(self.keys()):
            self.delete(key)

    def keys(self) -> Iterator[bytes]:
        """Every key, one system call each. A key deleted under the walk may restart it (a hash map's rule)."""
        key = self.next_key(None)
        while key is not None:
            yield key
            key = self.next_key(key)

    def lookup_batch(
        self,
        keys: ctypes.Array[ctypes.c_char],
        values: ctypes.Array[ctypes.c_char],
        count: int,
        in_batch: ctypes.Array[ctypes.c_char] | None,
        out_batch: ctypes.Array[ctypes.c_char],
        delete: bool = False,
    ) -> tuple[int, int]:
        """One BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH) call, Linux 5.6.

        Args:
            keys, values: buffers for `count` entries.
            in_batch: where the previous call stopped (its out_batch), None to begin.
            out_batch: a buffer the kernel writes where this call stopped
                (batch_token_size() bytes).
            delete: delete what is read (BPF_MAP_LOOKUP_AND_DELETE_BATCH).

        Returns:
            (entries read, errno): errno 0 when there is more to read, ENOENT
            when the map has been read to its end (entries may be read then
            as well), anything else an error that read nothing (ENOSPC: one
            hash bucket holds more entries than `count`).
        """
        attr = _BatchAttr(
            in_batch=_address(in_batch),
            out_batch=ctypes.addressof(out_batch),
            keys=ctypes.addressof(keys),
            values=ctypes.addressof(values),
            count=count,
            map_fd=self.fd,
        )
        try:
            bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else BPF_MAP_LOOKUP_BATCH, attr)
        except OSError as exc:
            err = exc.errno or errno.EIO
            # The kernel writes the count back at the end of the map, not
            # always on other errors, where the field may still hold the request.
            return (attr.count if err == errno.ENOENT else 0), err
        return attr.count, 0

    def batch_token_size(self) -> int:
        # Hash maps keep where a batch stopped in a u32 bucket index, arrays in a key.
        return max(8, self.key_size)

    def delete_batch(self, keys: bytes, count: int) -> None:
        """Delete `count` keys, back to back in `keys` (BPF_MAP_DELETE_BATCH, Linux 5.6)."""
        if count == 0:
            return
        attr = _BatchAttr(keys=_address(keys), count=count, map_fd=self.fd)
        try:
            bpf(BPF_MAP_DELETE_BATCH, attr)
        except OSError as exc:
            raise OSError(exc.errno, f"deleting from BPF map {self.name}: {exc.strerror}") from None
