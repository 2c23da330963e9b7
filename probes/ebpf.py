"""The eBPF machinery every eBPF probe uses: checks, program text, loading, map draining.

orac's process never imports bcc: a child process compiles and loads each
program with it and hands over file descriptors (probes/ebpf_loader.py), and
the maps are read through the bpf(2) system call (probes/bpf_syscall.py).
bcc's import and clang's compile would otherwise leave about 120 MiB in
orac's process for good. A box without bcc gets a ProbeUnavailable that
names the package to install.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import importlib.resources
import importlib.util
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from . import ebpf_loader
from .base import ProbeUnavailable
from .bpf_syscall import ENOTSUPP, BpfMap, map_info
from .bpf_syscall import parse_cpu_ranges, possible_cpus  # noqa: F401 - their home was here
from .procfs import read_text
from .syscall_names import syscall_table

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_EVENTS_DIRS = ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")

BCC_INSTALL = "sudo apt-get install python3-bpfcc (Debian/Ubuntu) or python3-bcc (Fedora)"
HEADERS_INSTALL = "sudo apt-get install linux-headers-$(uname -r)"

# Where distributions put bcc's Python module for the system python3.
SYSTEM_BCC_GLOBS = (
    "/usr/lib/python3/dist-packages/bcc/__init__.py",
    "/usr/lib/python3*/site-packages/bcc/__init__.py",
    "/usr/lib64/python3*/site-packages/bcc/__init__.py",
)

# bcc names its in-memory compilation unit this way in clang's messages.
BCC_MAIN_FILE = "/virtual/main.c"

# The loader child compiles, loads and attaches; clang on a slow box with a
# cold cache can take a while.
LOAD_TIMEOUT_S = 120

MEMBARRIER_CMD_GLOBAL = 1
NO_MEMBARRIER_WAIT_S = 0.01


def effective_capabilities(status_text: str | None = None) -> int:
    """The CapEff bit mask of this process, from /proc/self/status."""
    if status_text is None:
        status_text = read_text("/proc/self/status") or ""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_bpf_privileges(euid: int, cap_eff: int) -> bool:
    """Root, CAP_SYS_ADMIN (kernels before 5.8 know nothing finer), or CAP_BPF with CAP_PERFMON."""
    def has(cap: int) -> bool:
        return bool(cap_eff >> cap & 1)

    return euid == 0 or has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))


def kernel_headers_dir(release: str) -> str | None:
    """Where bcc will find kernel headers for `release`, or None."""
    candidates = [os.environ.get("BCC_KERNEL_SOURCE", ""), f"/lib/modules/{release}/build"]
    for path in candidates:
        if path and os.path.isdir(os.path.join(path, "include")):
            return path
    # bcc unpacks these itself (CONFIG_IKHEADERS, after `modprobe kheaders`).
    if os.path.exists("/sys/kernel/kheaders.tar.xz"):
        return "/sys/kernel/kheaders.tar.xz"
    return None


def headers_release(headers_dir: str) -> str | None:
    """The kernel release the headers in `headers_dir` were made for, when they say."""
    text = read_text(os.path.join(headers_dir, "include/generated/utsrelease.h")) or ""
    _, _, rest = text.partition('UTS_RELEASE "')
    return rest.partition('"')[0] or None


def _check_bcc() -> None:
    # find_spec finds the module without importing it: only the loader child
    # imports bcc (whether libbcc.so loads is its to say, see load_program).
    # The child is started with the same interpreter and path, so it sees
    # what this process sees.
    try:
        found = importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return
    if any(glob.glob(pattern) for pattern in SYSTEM_BCC_GLOBS):
        raise ProbeUnavailable(
            f"bcc is installed for the system python3, but orac's Python ({sys.executable}) does not see it",
            "create orac's virtualenv with `python3 -m venv --system-site-packages`",
        )
    raise ProbeUnavailable("bcc's Python module is not installed", BCC_INSTALL)


def check_ebpf(*, tracefs: bool = True) -> None:
    """Raise ProbeUnavailable unless bcc programs can be compiled and attached here.

    Args:
        tracefs: whether the probe attaches through tracefs (classic
            tracepoints). Raw tracepoints and perf events are attached by
            name and do not need it.
    """
    _check_bcc()
    if not has_bpf_privileges(os.geteuid(), effective_capabilities()):
        raise ProbeUnavailable("eBPF needs root, or CAP_BPF and CAP_PERFMON", "run `sudo orac`")
    if tracefs and not any(os.path.isdir(d) for d in TRACEFS_EVENTS_DIRS):
        raise ProbeUnavailable("tracefs is not mounted", "sudo mount -t tracefs nodev /sys/kernel/tracing")
    release = os.uname().release
    if kernel_headers_dir(release) is None:
        raise ProbeUnavailable(
            f"no kernel headers for the running kernel {release} (/lib/modules/{release}/build is missing)",
            HEADERS_INSTALL,
        )


@dataclass(frozen=True, slots=True)
class BpfProgram:
    """A program's source, the options it is compiled with, and the perf events its functions sample on."""

    source_name: str
    text: str
    cflags: tuple[str, ...]
    # Programs declared in the text (RAW_TRACEPOINT_PROBE...) attach as they
    # load; a perf event program is attached to the events named here.
    perf_events: tuple[ebpf_loader.PerfEvent, ...] = ()

    def listing(self) -> str:
        """The program as it is compiled, options written as #defines (for `--print-bpf`)."""
        lines = [f"// {self.source_name}, compiled with: {' '.join(self.cflags) or '(no options)'}"]
        for event in self.perf_events:
            rate = f"{event.sample_freq} Hz" if event.sample_freq else f"every {event.sample_period} events"
            cpus = "every online CPU" if event.cpu < 0 else f"CPU {event.cpu}"
            lines.append(
                f"// {event.fn_name} attached to perf event type {event.type} config {event.config}, {rate} on {cpus}"
            )
        for flag in self.cflags:
            if flag.startswith("-D"):
                name, _, value = flag[2:].partition("=")
                lines.append(f"#define {name} {value or 1}")
        return "\n".join(lines) + "\n\n" + self.text


def program_text(source_name: str) -> str:
    """Read a `.bpf.c` file shipped in this package.

    importlib.resources finds it wherever the package is installed; bcc's own
    `src_file` looks relative to the working directory and argv[0].
    """
    return importlib.resources.files(__package__).joinpath(source_name).read_text(encoding="utf-8")


def build_program(
    source_name: str, defines: Mapping[str, int | None], perf_events: tuple[ebpf_loader.PerfEvent, ...] = ()
) -> BpfProgram:
    """The program text and its -D options; a define whose value is None is left out."""
    cflags = tuple(f"-D{name}={value}" for name, value in defines.items() if value is not None)
    return BpfProgram(source_name, program_text(source_name), cflags, perf_events)


def first_error_line(stderr: str, source_name: str) -> str:
    """The line of bcc's output that says what went wrong.

    Clang's first error names the file and line; a verifier rejection ends
    its log with the reason just before the "processed N insns" summary (and
    bcc's HINT line, if any); an attach failure is bcc's line before the Python
    traceback.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
        traceback_at = lines.index("Traceback (most recent call last):")
        before, last = lines[:traceback_at], lines[-1]
    else:
        before, last = lines, (lines[-1] if lines else "no output")
    for line in before:
        if "error:" in line:
            return line.replace(BCC_MAIN_FILE, source_name)
    if before and before[0].startswith("bpf: Failed to load program"):
        # bcc follows some verifier errors with a HINT line of its own.
        log = [line for line in before if not line.startswith(("processed ", "HINT: "))]
        return f"{before[0]}: {log[-1]}" if len(log) > 1 else before[0]
    return before[0] if before else last


def _compile_remedy() -> str:
    release = os.uname().release
    headers = kernel_headers_dir(release)
    made_for = headers_release(headers) if headers else None
    if made_for and made_for != release:
        return f"the kernel headers are for {made_for}, the kernel is {release}: {HEADERS_INSTALL}"
    return "please report this as a bug, with the output of `orac doctor`"


class LoadedProgram:
    """A program in the kernel, held by file descriptors only.

    Its attachments keep it attached and its maps readable; `close` closes
    them all, which detaches the program, and the kernel frees it and its
    maps once nothing else holds them.
    """

    def __init__(self, source_name: str, attachments: tuple[ebpf_loader.Attachment, ...], maps: dict[str, BpfMap]):
        self.source_name = source_name
        self.attachments = attachments
        self.maps = maps

    def __getitem__(self, name: str) -> BpfMap:
        return self.maps[name]

    def close(self) -> None:
        # The attachments first, so no program runs into a map being closed
        # (it would not matter: a running program holds its maps).
        for attachment in self.attachments:
            try:
                os.close(attachment.fd)
            except OSError:
                pass
        self.attachments = ()
        for bpf_map in self.maps.values():
            bpf_map.close()
        self.maps = {}


def load_program(program: BpfProgram) -> LoadedProgram:
    """Compile, load and attach a program in a child process; slow (clang runs): collector thread only.

    Raises:
        ProbeUnavailable: with clang's or the verifier's first error line.
    """
    source_name = program.source_name
    # -w: a warning printed before an error would hide the error's line.
    flags = [*program.cflags, "-w"]
    try:
        loaded = ebpf_loader.load(program.text, flags, LOAD_TIMEOUT_S, program.perf_events)
    except ebpf_loader.LoadFailed as exc:
        if exc.returncode is None:
            raise ProbeUnavailable(f"compiling {source_name} took over {LOAD_TIMEOUT_S} s", _compile_remedy()) from None
        if exc.returncode == ebpf_loader.EXIT_NO_BCC:
            raise ProbeUnavailable(_last_line(exc.output) or str(exc), BCC_INSTALL) from None
        line = first_error_line(exc.output, source_name) if exc.output.strip() else str(exc)
        raise ProbeUnavailable(f"{source_name} does not load here: {line}", _compile_remedy()) from None
    except OSError as exc:
        # The child could not be started (no memory, no processes left).
        raise ProbeUnavailable(f"cannot start orac's eBPF loader: {exc}", "") from None
    try:
        maps = {}
        for spec in loaded.maps:
            bpf_map = BpfMap(spec.fd, spec.name, map_info(spec.fd))
            maps[spec.name] = bpf_map
            kernel = bpf_map.info
            said = (spec.type, spec.key_size, spec.value_size, spec.max_entries)
            if said != (kernel.type, kernel.key_size, kernel.value_size, kernel.max_entries):
                raise OSError(
                    errno.EPROTO,
                    f"map {spec.name}: the loader said (type, key, value, entries) {said}, the kernel "
                    f"{(kernel.type, kernel.key_size, kernel.value_size, kernel.max_entries)}",
                )
    except OSError as exc:
        loaded.close()
        raise ProbeUnavailable(f"{source_name} does not load here: {exc}", _compile_remedy()) from None
    return LoadedProgram(source_name, loaded.attachments, maps)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def unload_program(program: LoadedProgram) -> None:
    """Close every descriptor of `program`, so the kernel detaches and frees its programs and maps."""
    program.close()


def wait_for_programs() -> None:
    """Return once every BPF program running at the call has finished.

    Tracing programs run inside RCU read-side sections, and
    membarrier(MEMBARRIER_CMD_GLOBAL) waits for an RCU grace period
    (synchronize_rcu; milliseconds). Kernels with nohz_full CPUs refuse that
    command; there a pause far longer than any program runs has to do.
    """
    nr = next((n for n, name in syscall_table().items() if name == "membarrier"), None)
    if nr is not None:
        # syscall(2) reads its arguments as longs.
        args = (ctypes.c_long(nr), ctypes.c_long(MEMBARRIER_CMD_GLOBAL), ctypes.c_long(0), ctypes.c_long(0))
        if _libc().syscall(*args) == 0:
            return
    time.sleep(NO_MEMBARRIER_WAIT_S)


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
_ARRAY_INDEX = struct.Struct("=I")  # an array map's key
_COUNTER = struct.Struct("=Q")  # one CPU's copy of a u64 in a per-CPU map


def read_percpu_counters(table: BpfMap, n: int) -> list[int]:
    """Entries 0..n-1 of a per-CPU array of u64, each summed over every CPU's copy."""
    out = []
    for i in range(n):
        # An array's entries always exist; "or" only guards a short read.
        value = table.lookup(_ARRAY_INDEX.pack(i)) or b""
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


def load_and_open(program: BpfProgram, open_maps: Callable[[LoadedProgram], None]) -> LoadedProgram:
    """Load `program` and hand it to `open_maps`; unload it again if its maps do not read."""
    bpf = load_program(program)
    try:
        open_maps(bpf)
    except (KeyError, OSError) as exc:
        unload_program(bpf)
        raise ProbeUnavailable(f"{program.source_name} loaded, but its maps do not read: {exc}") from None
    return bpf


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
