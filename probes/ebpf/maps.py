"""Reading eBPF maps once a tick: batch draining by generation, per-CPU sums, the focus word, comm names."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable, Iterable, Iterator

from probes.ebpf.bpf import ENOTSUPP, BpfMap, map_info, parse_cpu_ranges, possible_cpus  # noqa: F401 - their home was here
from probes.ebpf.programs import wait_for_programs
from probes.host.procfs import PROC, read_text


class MapDrain:
    """Takes entries out of one hash map (plain or per-CPU), in batches where the kernel can.

    Meant for maps whose keys carry a generation (see wait_for_programs):
    once no program can touch the old generation's entries, reading them and
    then deleting them loses nothing. Deleting entries a program may still be
    updating would lose those updates; that is also why this does not use
    BPF_MAP_LOOKUP_AND_DELETE_BATCH, which would take the current
    generation's entries from under the programs counting into them.

    Batches (BPF_MAP_LOOKUP_BATCH and BPF_MAP_DELETE_BATCH, Linux 5.6) take
    one syscall per batch whatever the number of CPUs; older kernels get a
    lookup and a delete per key. The batch buffers start at FIRST_BATCH_BYTES,
    enough for a typical tick, and double (up to BATCH_BYTES) after a tick
    that needed more than one batch: orac's resident memory stays small on a
    quiet box, and a busy one soon reads its maps in one or two calls.
    """

    FIRST_BATCH_BYTES = 64 << 10
    BATCH_BYTES = 1 << 20

    def __init__(self, table: BpfMap, batch: bool = True) -> None:
        """Wrap one map.

        Args:
            table: a hash map.
            batch: use the batch calls where the kernel has them; False takes
                the older kernels' way on any kernel (for tests).
        """
        self._table = table
        self.key_size = table.key_size
        # For per-CPU maps, every possible CPU's copy.
        self.value_size = table.value_size
        self._batch = batch
        self._token_in = ctypes.create_string_buffer(table.batch_token_size())
        self._token_out = ctypes.create_string_buffer(table.batch_token_size())
        self._allocate(self._entries_for(self.FIRST_BATCH_BYTES))

    def _entries_for(self, size_bytes: int) -> int:
        return max(16, min(self._table.max_entries, size_bytes // self.value_size))

    def _allocate(self, entries: int) -> None:
        self._entries = entries
        self._keys = ctypes.create_string_buffer(entries * self.key_size)
        self._values = ctypes.create_string_buffer(entries * self.value_size)

    def take(self, select: Callable[[bytes], bool]) -> tuple[bytes, bytes, int]:
        """Delete and return the entries whose key `select` accepts.

        Returns:
            (keys, values, n): the n keys and n values back to back.
        """
        if self._batch:
            entries = self._read_batch()
            if entries is not None:
                keys, values, n = self._select(*entries, select)
                self._table.delete_batch(keys, n)
                return keys, values, n
        return self._take_each(select)

    def _select(self, keys: bytes, values: bytes, n: int, select: Callable[[bytes], bool]) -> tuple[bytes, bytes, int]:
        ks, vs = self.key_size, self.value_size
        chosen = [i for i in range(n) if select(keys[i * ks : (i + 1) * ks])]
        if len(chosen) == n:
            return keys, values, n
        return (
            b"".join(keys[i * ks : (i + 1) * ks] for i in chosen),
            b"".join(values[i * vs : (i + 1) * vs] for i in chosen),
            len(chosen),
        )

    def _read_batch(self) -> tuple[bytes, bytes, int] | None:
        """Every entry, or None where the kernel has no batch lookup."""
        keys, values = bytearray(), bytearray()
        total = 0
        first = True
        while True:
            n, err = self._table.lookup_batch(
                self._keys, self._values, self._entries, None if first else self._token_in, self._token_out
            )
            keys += memoryview(self._keys)[: n * self.key_size]
            values += memoryview(self._values)[: n * self.value_size]
            total += n
            if err == 0:
                ctypes.memmove(self._token_in, self._token_out, ctypes.sizeof(self._token_in))
                first = False
            elif err == errno.ENOENT:
                if not first:
                    # More than one batch this tick: fewer calls next time.
                    grown = self._entries_for(min(self.BATCH_BYTES, 2 * self._entries * self.value_size))
                    if grown > self._entries:
                        self._allocate(grown)
                return bytes(keys), bytes(values), total
            elif err == errno.ENOSPC and n == 0:
                # One bucket holds more entries than the buffer: grow it and retry that bucket.
                self._allocate(self._entries * 2)
            elif first and err in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                self._batch = False
                return None
            else:
                raise OSError(err, f"reading BPF map {self._table.name}: {os.strerror(err)}")

    def _take_each(self, select: Callable[[bytes], bool]) -> tuple[bytes, bytes, int]:
        table = self._table
        keys, values = bytearray(), bytearray()
        total = 0
        # All keys first: deleting under a hash map's key walk can restart it.
        for key in list(table.keys()):
            if not select(key):
                continue
            value = table.lookup(key)
            if value is None:
                continue
            table.delete(key)
            keys += key
            values += value
            total += 1
        return bytes(keys), bytes(values), total


class ThreadFocus:
    """The process an eBPF probe counts thread by thread (a drill-down's), and the map it counts into.

    The programs compare each event's tgid with one word user space writes
    (0: nobody). A probe that traces one process (`target_pid`) always counts
    its threads. The per-thread map's batch buffers are allocated only once a
    process is asked for.
    """

    def __init__(self, target_pid: int | None) -> None:
        self._target = target_pid
        self.pid = target_pid
        self._table: BpfMap | None = None
        self._write: Callable[[int], None] | None = None
        self._drain: MapDrain | None = None

    def open(self, table: BpfMap, write: Callable[[int], None]) -> None:
        """The programs are loaded: they count into `table`; `write` sets their focus word."""
        self._table, self._write, self._drain = table, write, None
        self._apply()

    def close(self) -> None:
        self._table = self._write = self._drain = None

    def set(self, pid: int | None) -> None:
        """Count `pid`'s threads from now on (None: nobody's)."""
        self.pid = self._target if self._target is not None else pid
        if self._write is not None:
            self._apply()

    def _apply(self) -> None:
        assert self._write is not None and self._table is not None
        self._write(self.pid or 0)
        if self.pid is not None and self._drain is None:
            self._drain = MapDrain(self._table)

    def take(self, select: Callable[[bytes], bool]) -> tuple[bytes, bytes, int]:
        """The per-thread entries `select` accepts (MapDrain.take); none before a process was asked for."""
        return self._drain.take(select) if self._drain is not None else (b"", b"", 0)


def percpu_entries(
    keys: bytes, values: bytes, n: int, key: struct.Struct, value: struct.Struct
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """A per-CPU hash map's batch read: (key fields, value fields summed over every CPU's copy) per entry."""
    if n == 0:
        return
    value_size = len(values) // n
    view = memoryview(values)
    for i in range(n):
        copies = value.iter_unpack(view[i * value_size : (i + 1) * value_size])
        yield key.unpack_from(keys, i * key.size), tuple(map(sum, zip(*copies)))


# A task's comm, as bpf_get_current_comm fills it.
COMM_BYTES = 16
ARRAY_INDEX = struct.Struct("=I")  # an array map's key
_COUNTER = struct.Struct("=Q")  # one CPU's copy of a u64 in a per-CPU map


def read_percpu_counters(table: BpfMap, n: int) -> list[int]:
    """Entries 0..n-1 of a per-CPU array of u64, each summed over every CPU's copy."""
    out = []
    for i in range(n):
        # An array's entries always exist; "or" only guards a short read.
        value = table.lookup(ARRAY_INDEX.pack(i)) or b""
        out.append(sum(v for (v,) in _COUNTER.iter_unpack(value)))
    return out


def parse_comms(keys: bytes, values: bytes, n: int, key: struct.Struct) -> dict[int, str]:
    """A comm map's batch read: tgid (the key's first field) -> name."""
    comms = {}
    for i in range(n):
        tgid = key.unpack_from(keys, i * key.size)[0]
        raw = values[i * COMM_BYTES : (i + 1) * COMM_BYTES]
        comms[tgid] = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return comms


def name_the_unnamed(comms: dict[int, str], pids: Iterable[int]) -> None:
    """Add to `comms` the names of `pids` it lacks, from /proc.

    The kernel's comm map had no room for them; a process may have exited
    since, and is then "?".
    """
    for pid in pids:
        if pid not in comms:
            comms[pid] = (read_text(f"{PROC}/{pid}/comm") or "").strip() or "?"


def advance_generation(generation: int, write: Callable[[int], None]) -> int:
    """Switch the programs to the next generation and wait until none writes the old one.

    Map entries carry the generation they were counted in, so once this
    returns every entry not of the new generation is complete and can be
    read and deleted without losing an update.
    """
    generation = (generation + 1) & 0xFFFFFFFF
    write(generation)
    wait_for_programs()
    return generation
