"""The eBPF machinery every eBPF probe uses: checks, program text, loading, map draining.

orac's process never imports bcc: a child process compiles and loads each
program with it and hands over file descriptors (probes/ebpf/loader.py), and
the maps are read through the bpf(2) system call (probes/ebpf/bpf.py).
bcc's import and clang's compile would otherwise leave about 120 MiB in
orac's process for good. A box without bcc gets a ProbeUnavailable that
names the package to install.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.resources
import importlib.util
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from probes.contract import ProbeUnavailable
from probes.ebpf import loader as ebpf_loader
from probes.ebpf.attach import attach_perf_event, attach_raw_tracepoint, attach_tracepoint
from probes.ebpf.bpf import ENOTSUPP, BpfMap, map_info, parse_cpu_ranges, possible_cpus  # noqa: F401 - their home was here
from probes.ebpf.checks import (
    BCC_INSTALL,
    HEADERS_INSTALL,
    headers_release,
    kernel_headers_dir,
)
from probes.ebpf.syscall_names import syscall_table
from probes.host.procfs import read_text

# bcc names its in-memory compilation unit this way in clang's messages.
BCC_MAIN_FILE = "/virtual/main.c"

# The loader child compiles, loads and attaches; clang on a slow box with a
# cold cache can take a while.
LOAD_TIMEOUT_S = 120

MEMBARRIER_CMD_GLOBAL = 1
NO_MEMBARRIER_WAIT_S = 0.01


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


# The header every program includes (orac.bpf.h, beside this module); others
# there (python_frames.bpf.h) go in the same way where a program includes them.
SHARED_HEADER = "orac.bpf.h"
_INCLUDE = re.compile(r'#include "([a-z_]+\.bpf\.h)"')


def program_text(source_name: str) -> str:
    """A `.bpf.c` file shipped in this package, with orac's headers put where they are included.

    importlib.resources finds them wherever the package is installed; bcc's
    own `src_file` looks relative to the working directory and argv[0]. A
    header goes in as text, not by clang's include path, so `--print-bpf`
    shows the whole program; #line directives keep clang's messages naming
    the file and line they are about.
    """
    text = importlib.resources.files("probes.sources").joinpath(source_name).read_text(encoding="utf-8")
    headers = importlib.resources.files("probes.ebpf")
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        included = _INCLUDE.fullmatch(line.strip())
        if included:
            name = included.group(1)
            header = headers.joinpath(name).read_text(encoding="utf-8")
            lines[number - 1] = f'#line 1 "{name}"\n{header}#line {number + 1} "{source_name}"\n'
    return "".join(lines)


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

    def __init__(
        self,
        source_name: str,
        attachments: tuple[ebpf_loader.Attachment, ...],
        maps: dict[str, BpfMap],
        programs: tuple[ebpf_loader.ProgramFd, ...] = (),
        perf_events: tuple[ebpf_loader.PerfEvent, ...] = (),
    ):
        self.source_name = source_name
        self.attachments = attachments
        self.maps = maps
        # Programs loaded detached (kept ready for a drill-down), and the
        # perf events their sampling function attaches to.
        self.programs = programs
        self.perf_events = perf_events

    def __getitem__(self, name: str) -> BpfMap:
        return self.maps[name]

    def attach(self) -> None:
        """Attach the programs it holds detached, from this process (milliseconds, no compile).

        Raises:
            OSError: one would not attach; those attached so far are detached again.
        """
        made: list[ebpf_loader.Attachment] = []
        try:
            for program in self.programs:
                if program.kind == "raw_tracepoint":
                    fd = attach_raw_tracepoint(program.fd, program.target)
                    made.append(ebpf_loader.Attachment(program.kind, program.target, fd))
                elif program.kind == "tracepoint":
                    category, _, name = program.target.partition(":")
                    fd = attach_tracepoint(program.fd, category, name)
                    made.append(ebpf_loader.Attachment(program.kind, program.target, fd))
                else:
                    for event in self.perf_events:
                        if event.fn_name != program.target:
                            continue
                        for cpu in online_cpus() if event.cpu < 0 else [event.cpu]:
                            fd = attach_perf_event(
                                program.fd, event.type, event.config, event.sample_freq, event.sample_period, cpu
                            )
                            made.append(
                                ebpf_loader.Attachment(program.kind, f"{event.type}:{event.config}/cpu{cpu}", fd)
                            )
        except OSError:
            _close_attachments(made)
            raise
        self.attachments = (*self.attachments, *made)

    def detach(self) -> None:
        """Close its attachments: its programs stop running, and stay loaded with their maps."""
        _close_attachments(self.attachments)
        self.attachments = ()

    def close(self) -> None:
        # The attachments first, so no program runs into a map being closed
        # (it would not matter: a running program holds its maps).
        self.detach()
        for program in self.programs:
            try:
                os.close(program.fd)
            except OSError:
                pass
        self.programs = ()
        for bpf_map in self.maps.values():
            bpf_map.close()
        self.maps = {}


def _close_attachments(attachments: Iterable[ebpf_loader.Attachment]) -> None:
    for attachment in attachments:
        try:
            os.close(attachment.fd)
        except OSError:
            pass


def online_cpus() -> list[int]:
    """The CPUs online now, where a per-CPU perf event is opened."""
    text = read_text("/sys/devices/system/cpu/online") or f"0-{(os.cpu_count() or 1) - 1}"
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def load_program(program: BpfProgram, attach: bool = True) -> LoadedProgram:
    """Compile, load and attach a program in a child process; slow (clang runs): collector thread only.

    `attach` False: loaded only, for LoadedProgram.attach later.

    Raises:
        ProbeUnavailable: with clang's or the verifier's first error line.
    """
    source_name = program.source_name
    # -w: a warning printed before an error would hide the error's line.
    flags = [*program.cflags, "-w"]
    try:
        loaded = ebpf_loader.load(program.text, flags, LOAD_TIMEOUT_S, program.perf_events, attach)
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
    return LoadedProgram(source_name, loaded.attachments, maps, loaded.programs, program.perf_events)


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


def load_and_open(program: BpfProgram, open_maps: Callable[[LoadedProgram], None]) -> LoadedProgram:
    """Load `program` and hand it to `open_maps`; unload it again if its maps do not read."""
    bpf = load_program(program)
    try:
        open_maps(bpf)
    except (KeyError, OSError) as exc:
        unload_program(bpf)
        raise ProbeUnavailable(f"{program.source_name} loaded, but its maps do not read: {exc}") from None
    return bpf
