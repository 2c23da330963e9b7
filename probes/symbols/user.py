"""User-space addresses of a process to names: its memory maps, its binaries' ELF symbols, perf maps and the vdso."""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from probes.host.procfs import read_bytes
from probes.symbols.elf import ANON, PROC, UNKNOWN, ElfSymbols, _read_all, _read_text


class _Mapping(NamedTuple):
    start: int
    end: int
    pgoff: int
    path: str
    key: tuple[bytes, int] | None  # (device "fe:00", inode) for file mappings


def _read_maps(pid: int) -> list[_Mapping] | None:
    """The executable mappings of a process (stack frames only point there)."""
    data = _read_all(f"{PROC}/{pid}/maps")
    if data is None:
        return None
    out = []
    for line in data.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 5 or parts[1][2:3] != b"x":
            continue
        start, _, end = parts[0].partition(b"-")
        path = os.fsdecode(parts[5]) if len(parts) > 5 else ""
        try:
            inode = int(parts[4])
            out.append(_Mapping(int(start, 16), int(end, 16), int(parts[2], 16), path,
                                (parts[3], inode) if inode else None))
        except ValueError:
            continue
    return out


def _process_identity(pid: int) -> tuple[object, ...] | None:
    """What changes when a pid is reused (start time) or execs (the executable)."""
    stat = read_bytes(f"{PROC}/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(b")")[2].split()
    start_ticks = fields[19] if len(fields) > 19 else b""
    try:
        exe = os.stat(f"{PROC}/{pid}/exe")
        exe_id: tuple[int, int] | None = (exe.st_dev, exe.st_ino)
    except OSError:
        exe_id = None
    return (start_ticks, exe_id)


class _PerfMap:
    """One /tmp/perf-PID.map: "START SIZE name" lines (hex) written by JITs."""

    __slots__ = ("checked_tick", "name_at", "names", "path", "signature", "sizes", "starts")

    def __init__(self, path: str) -> None:
        self.path = path
        self.signature: tuple[int, int] | None = None
        self.starts = array("Q")
        self.sizes = array("Q")
        self.name_at = array("I", [0])
        self.names = b""
        self.checked_tick = -1

    def refresh(self, tick: int) -> None:
        """Re-read the file if it changed; at most once per tick (JITs append as they go)."""
        if self.checked_tick == tick:
            return
        self.checked_tick = tick
        try:
            st = os.stat(self.path)
        except OSError:
            self.signature = None
            self.starts, self.sizes, self.name_at, self.names = array("Q"), array("Q"), array("I", [0]), b""
            return
        signature = (st.st_size, st.st_mtime_ns)
        if signature == self.signature:
            return
        data = _read_all(self.path) or b""
        entries = []
        for index, line in enumerate(data.split(b"\n")):
            parts = line.split(None, 2)
            if len(parts) < 3:
                continue
            try:
                entries.append((int(parts[0], 16), -index, int(parts[1], 16), parts[2].strip()))
            except ValueError:
                continue
        # JITs reuse addresses; the latest line for an address wins (-index).
        entries.sort()
        starts, sizes, name_at, blob, length, last = array("Q"), array("Q"), array("I", [0]), [], 0, None
        for start, _, size, name in entries:
            if start == last:
                continue
            last = start
            starts.append(start)
            sizes.append(size)
            blob.append(name)
            length += len(name)
            name_at.append(length)
        self.signature = signature
        self.starts, self.sizes, self.name_at, self.names = starts, sizes, name_at, b"".join(blob)

    def lookup(self, addr: int) -> str | None:
        i = bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.starts[i] + self.sizes[i]:
            return None
        return self.names[self.name_at[i]: self.name_at[i + 1]].decode("utf-8", "replace")


class _Process:
    """What is cached about one process: its executable mappings and resolved names."""

    __slots__ = (
        "checked_tick",
        "identity",
        "maps",
        "names",
        "perf_map",
        "pid",
        "refreshed_tick",
        "starts",
        "used_tick",
    )

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.identity: tuple[object, ...] | None = None
        self.maps: list[_Mapping] = []
        self.starts = array("Q")
        self.names: dict[int, str] = {}
        self.checked_tick = -1
        self.refreshed_tick = -1
        self.used_tick = 0
        self.perf_map: _PerfMap | None = None

    def set_maps(self, maps: list[_Mapping] | None) -> None:
        maps = maps or []
        if maps != self.maps:
            self.maps = maps
            self.starts = array("Q", (m.start for m in maps))
            self.names.clear()

    def find(self, addr: int) -> _Mapping | None:
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.maps[i].end:
            return self.maps[i]
        return None


class UserSymbols:
    """Names for user-space addresses of live processes.

    Args:
        perf_map_dir: Where perf-PID.map files are; None (the default) means
            the process's own /tmp (through /proc/PID/root, with its
            namespace pid), which is where JITs write them.
        debug_dir: Where build-id debug files are (`.build-id/xx/yyyy.debug`
            below it); None means the process's own /usr/lib/debug.
        max_processes: Processes cached at most (least recently used go).
        max_binaries: Binaries cached at most (least recently used go).
        process_idle_ticks: Forget a process not looked up for this many ticks.
        binary_idle_ticks: Forget a binary not looked up for this many ticks.
        names_per_process: Resolved addresses cached per process at most.

    Per process: its executable mappings from /proc/PID/maps, re-read (at
    most once per tick) when an address falls outside all of them, since
    processes map new libraries; and a dict of already resolved addresses.
    Once per tick before use, the process's start time and executable are
    checked, so a pid that was reused or exec'ed starts afresh.

    Per binary, keyed by (device, inode) so that every process mapping a
    library shares one table: its ElfSymbols, read through /proc/PID/root
    (so that files in containers and other mount namespaces are the right
    ones) or /proc/PID/map_files when the file was deleted or replaced.
    """

    def __init__(self, *, perf_map_dir: str | None = None, debug_dir: str | None = None,
                 max_processes: int = 512, max_binaries: int = 256, process_idle_ticks: int = 60,
                 binary_idle_ticks: int = 600, names_per_process: int = 16384) -> None:
        self.perf_map_dir = perf_map_dir
        self.debug_dir = debug_dir
        self.max_processes = max_processes
        self.max_binaries = max_binaries
        self.process_idle_ticks = process_idle_ticks
        self.binary_idle_ticks = binary_idle_ticks
        self.names_per_process = names_per_process
        self.tick_count = 0
        self._processes: OrderedDict[int, _Process] = OrderedDict()
        self._binaries: OrderedDict[tuple[bytes, int], ElfSymbols] = OrderedDict()
        self._vdso: tuple[int, ElfSymbols | None] | None = None
        # Counters, for a probe to show what it lost.
        self.lookups = 0
        self.unknown = 0
        self.gone_processes = 0
        self.binaries_loaded = 0
        self.binary_errors = 0

    # -- the API --

    def resolve(self, pid: int, addrs: Iterable[int], *, offsets: bool = False,
                return_addresses: bool = False) -> list[str]:
        """Name each address of process `pid` (its tgid), in order.

        Args:
            pid: The process (thread group id) the addresses belong to.
            addrs: User-space addresses.
            offsets: Append "+0x1f" (the offset into the function).
            return_addresses: The addresses after the first are return
                addresses (a stack, leaf first): look each up one byte
                earlier, inside its call instruction, so that a call that is
                a function's last instruction names that function and not the
                next one. The names' offsets stay those of the addresses given.
        """
        proc = self._process(pid)
        out = []
        for i, addr in enumerate(addrs):
            self.lookups += 1
            at = addr - 1 if return_addresses and i and addr else addr
            name = None if offsets else proc.names.get(at)
            if name is None:
                name, cache = self._resolve(proc, at, offsets, addr - at)
                if cache and not offsets:
                    if len(proc.names) >= self.names_per_process:
                        proc.names.clear()
                    proc.names[at] = name
            if name == UNKNOWN:
                self.unknown += 1
            out.append(name)
        return out

    def tick(self) -> None:
        """Advance the clock: call once per sample. Ages and bounds the caches."""
        self.tick_count += 1
        now = self.tick_count
        for pid in [p for p, proc in self._processes.items() if now - proc.used_tick > self.process_idle_ticks]:
            del self._processes[pid]
        for key in [k for k, b in self._binaries.items()
                    if now - b.used_tick > (self.binary_idle_ticks if b.error is None else 30)]:
            del self._binaries[key]

    def forget(self, pid: int) -> None:
        """Drop what is cached about a process (it exited)."""
        self._processes.pop(pid, None)

    @property
    def cached_processes(self) -> int:
        return len(self._processes)

    @property
    def cached_binaries(self) -> int:
        return len(self._binaries)

    @property
    def memory_bytes(self) -> int:
        """Rough size of the binaries' symbol tables."""
        return sum(b.memory_bytes for b in self._binaries.values())

    # -- processes --

    def _process(self, pid: int) -> _Process:
        proc = self._processes.get(pid)
        if proc is None:
            proc = self._processes[pid] = _Process(pid)
            while len(self._processes) > self.max_processes:
                self._processes.popitem(last=False)
        else:
            self._processes.move_to_end(pid)
        proc.used_tick = self.tick_count
        if proc.checked_tick != self.tick_count:
            proc.checked_tick = self.tick_count
            identity = _process_identity(pid)
            if identity is None:
                # Exited. What is cached (maps, loaded binaries) still names
                # its last stacks; nothing new can be read.
                if proc.identity is not None or proc.refreshed_tick < 0:
                    self.gone_processes += 1
                proc.refreshed_tick = self.tick_count
            elif identity != proc.identity:
                # New process, or one that exec'ed or reused the pid: start afresh.
                proc.perf_map = None
                proc.set_maps(None)
                proc.set_maps(_read_maps(pid))
                proc.refreshed_tick = self.tick_count
            proc.identity = identity
        return proc

    def _resolve(self, proc: _Process, addr: int, offsets: bool, shown_delta: int) -> tuple[str, bool]:
        """(name, whether it may be cached) for one address."""
        mapping = proc.find(addr)
        if mapping is None and proc.refreshed_tick != self.tick_count and proc.identity is not None:
            proc.refreshed_tick = self.tick_count
            proc.set_maps(_read_maps(proc.pid))
            mapping = proc.find(addr)
        if mapping is None:
            # Unmapped: JIT code freed since, a garbage frame (code built
            # without frame pointers), or a library mapped after the last
            # read of the maps. Not cached, so the next tick looks again.
            name = self._perf_map_name(proc, addr)
            return (name, True) if name else (UNKNOWN, False)
        path = mapping.path
        if path == "[vdso]":
            return self._vdso_name(mapping, addr, offsets, shown_delta), True
        if not path or path.startswith("[anon") or path.startswith("[heap") or path.startswith("[stack"):
            name = self._perf_map_name(proc, addr)
            # Not cached when missing: the JIT may write the line later.
            return (name, True) if name else (path or ANON, False)
        if path.startswith("["):
            return path, True
        binary = self._binary(proc.pid, mapping)
        file_offset = addr - mapping.start + mapping.pgoff
        vaddr = binary.vaddr(file_offset) if binary is not None else None
        found = binary.lookup(vaddr) if binary is not None and vaddr is not None else None
        if found is not None:
            name, offset = found
            return (f"{name}+0x{offset + shown_delta:x}" if offsets else name), True
        jit = self._perf_map_name(proc, addr)
        if jit:
            return jit, True
        module = os.path.basename(path.removesuffix(" (deleted)"))
        # Cached only when it shows the very address looked up.
        return f"{module}+0x{(vaddr if vaddr is not None else file_offset) + shown_delta:x}", not shown_delta

    # -- binaries --

    def _binary(self, pid: int, mapping: _Mapping) -> ElfSymbols | None:
        key = mapping.key
        if key is None:
            return None
        binary = self._binaries.get(key)
        if binary is None:
            binary = self._load_binary(pid, mapping)
            self._binaries[key] = binary
            while len(self._binaries) > self.max_binaries:
                self._binaries.popitem(last=False)
            binary.used_tick = self.tick_count
        else:
            self._binaries.move_to_end(key)
            # A file that failed is tried again once it ages out, used or not.
            if binary.error is None:
                binary.used_tick = self.tick_count
        return binary

    def _load_binary(self, pid: int, mapping: _Mapping) -> ElfSymbols:
        # The very file mapped, even when deleted or replaced on disk (root only).
        map_file = f"{PROC}/{pid}/map_files/{mapping.start:x}-{mapping.end:x}"
        candidates = [map_file]
        if not mapping.path.endswith(" (deleted)"):
            # Through the process's root: the file in its container. An
            # upgrade may have put another file at the path (then use it only
            # if it is the mapped inode); overlay filesystems may report
            # another inode, so the path stays a last resort after map_files.
            path = f"{PROC}/{pid}/root{mapping.path}"
            try:
                same = mapping.key is not None and os.stat(path).st_ino == mapping.key[1]
            except OSError:
                same = False
            candidates.insert(0 if same else 1, path)
        debug_file = self._debug_file_finder(pid)
        error = "no such file"
        for candidate in candidates:
            try:
                table = ElfSymbols.from_path(candidate, debug_file)
            except (OSError, ValueError) as exc:
                error = f"{mapping.path}: {exc}"
                continue
            self.binaries_loaded += 1
            return table
        self.binary_errors += 1
        return ElfSymbols(error=error)

    def _debug_file_finder(self, pid: int) -> Callable[[str], str | None]:
        root = self.debug_dir if self.debug_dir is not None else f"{PROC}/{pid}/root/usr/lib/debug"

        def find(build_id: str) -> str | None:
            path = f"{root}/.build-id/{build_id[:2]}/{build_id[2:]}.debug"
            return path if os.path.exists(path) else None

        return find

    # -- JIT maps and the vdso --

    def _perf_map_name(self, proc: _Process, addr: int) -> str | None:
        if proc.identity is None:
            return None
        if proc.perf_map is None:
            ns_pid = proc.pid
            status = _read_text(f"{PROC}/{proc.pid}/status")
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    # The pid as the process itself sees it (in its container).
                    ns_pid = int(line.split()[-1])
                    break
            base = self.perf_map_dir if self.perf_map_dir is not None else f"{PROC}/{proc.pid}/root/tmp"
            proc.perf_map = _PerfMap(f"{base}/perf-{ns_pid}.map")
        perf_map = proc.perf_map
        if perf_map.checked_tick < 0:
            perf_map.refresh(self.tick_count)
        name = perf_map.lookup(addr)
        if name is None and perf_map.checked_tick != self.tick_count:
            perf_map.refresh(self.tick_count)
            name = perf_map.lookup(addr)
        return name

    def _vdso_name(self, mapping: _Mapping, addr: int, offsets: bool, shown_delta: int) -> str:
        """Through this process's own vdso: the kernel gives every 64-bit process the same one."""
        if self._vdso is None:
            self._vdso = _own_vdso()
        size, table = self._vdso
        if table is None or mapping.end - mapping.start != size:
            return "[vdso]"
        vaddr = table.vaddr(addr - mapping.start)
        found = table.lookup(vaddr) if vaddr is not None else None
        if found is None:
            return "[vdso]"
        return f"{found[0]}+0x{found[1] + shown_delta:x}" if offsets else found[0]


def _own_vdso() -> tuple[int, ElfSymbols | None]:
    """This process's vdso image, read from its own memory, and its size."""
    maps = _read_text(f"{PROC}/self/maps")
    for line in maps.splitlines():
        if line.endswith("[vdso]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            try:
                fd = os.open(f"{PROC}/self/mem", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    image = os.pread(fd, end - start, start)
                finally:
                    os.close(fd)
                return end - start, ElfSymbols.from_buffer(image)
            except (OSError, ValueError, OverflowError):
                return end - start, None
    return 0, None
