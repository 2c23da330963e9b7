"""Compile and load a bcc program in a child process, and take its file descriptors.

bcc costs about 64 MiB to import and 60 MiB more to compile a program
(clang and LLVM), and a process gets none of it back afterwards: orac
without eBPF takes about 42 MiB in all. So orac never imports bcc. A child,
`python -m probes.ebpf.loader`, does the work:

1. reads the program text and its cflags from stdin (JSON);
2. imports bcc, compiles, loads, and attaches what the program declares
   (RAW_TRACEPOINT_PROBE, TRACEPOINT_PROBE; bcc attaches them as it loads)
   and the perf events the request names (a sampling program such as the
   on-CPU profile's: one perf event per online CPU, the program attached);
3. sends over a Unix socket (SCM_RIGHTS) the descriptors that keep the
   program in the kernel: each attachment (closing one detaches its
   program) and each map, by name, with its key size, value size, entry
   count and type; or, asked for the programs detached (a drill-down's,
   compiled before they are needed: probes/ebpf/prepared.py), each
   program and where it attaches, for orac to attach itself
   (probes/ebpf/attach.py);
4. exits. The kernel keeps the programs and maps while orac holds the
   descriptors, and frees them when orac closes the last one.

Everything the child prints (clang's errors, the verifier's log, a
traceback) goes to a pipe that orac reads, never to orac's terminal, where
Textual draws.

This module imports only the standard library at the top, so orac's
process can import it for `load` without bringing bcc in.
"""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from probes.host.aside import child_env

# A message carries at most SCM_MAX_FD descriptors (the kernel's limit).
MAX_FDS = 253
MESSAGE_BYTES = 1 << 16

# Exit statuses of the child besides 0 and Python's 1 (an uncaught exception).
EXIT_NO_BCC = 3  # bcc's module or library does not load
EXIT_UNSUPPORTED = 4  # the program attaches in a way whose descriptors cannot be handed over

# bcc's dictionaries of attachments whose descriptor alone holds the program
# attached: raw tracepoints and fentry/fexit/LSM are BPF links, tracepoints
# perf events. kprobes and uprobes may leave tracefs events behind that only
# bcc's cleanup removes, so a program using them is not loaded this way.
ATTACHMENT_KINDS = {
    "raw_tracepoint_fds": "raw_tracepoint",
    "tracepoint_fds": "tracepoint",
    "kfunc_entry_fds": "kfunc_entry",
    "kfunc_exit_fds": "kfunc_exit",
    "lsm_fds": "lsm",
}
UNSUPPORTED_KINDS = {"kprobe_fds": "kprobes", "uprobe_fds": "uprobes"}
# Attachments of programs to perf events (bcc's open_perf_events): the
# event's descriptor holds the program (the event keeps a reference to it),
# and closing the event's last descriptor frees it, which detaches the program.
PERF_EVENT_KIND = "perf_event"

# perf_event_open's type and config for a software CPU clock (uapi
# linux/perf_event.h: PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK). An
# hrtimer drives it, so it samples on any machine, VMs without a PMU included.
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0

# The text of a message continuing the first one's descriptors (see main):
# not empty, which would read as the end of file.
MORE_FDS = b"+"


@dataclass(frozen=True, slots=True)
class PerfEvent:
    """A perf event for the loader to open and attach a program of the request to.

    Attributes:
        fn_name: the program's function in the source.
        type, config: perf_event_open's event type and config.
        sample_freq: samples per second (the kernel picks the period), or 0.
        sample_period: events between samples, when sample_freq is 0.
        cpu: the CPU to sample, or -1 for one event on each online CPU.
    """

    fn_name: str
    type: int
    config: int
    sample_freq: int = 0
    sample_period: int = 0
    cpu: int = -1


@dataclass(frozen=True, slots=True)
class Attachment:
    kind: str  # ATTACHMENT_KINDS' values, or PERF_EVENT_KIND
    # the tracepoint or function; for a perf event "type:config/cpuN"
    name: str
    fd: int


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A map as the loader describes it: bcc's view, for a check against the kernel's."""

    name: str
    type: int
    key_size: int
    value_size: int  # one CPU's copy
    max_entries: int
    fd: int


@dataclass(frozen=True, slots=True)
class ProgramFd:
    """A loaded program the loader left detached, and where it attaches.

    Attributes:
        kind: "raw_tracepoint", "tracepoint" or PERF_EVENT_KIND.
        target: the raw tracepoint's name, the tracepoint's "category:event",
            or the function's name for the request's perf events.
    """

    kind: str
    target: str
    fd: int


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the loader handed over; the caller owns every descriptor."""

    attachments: tuple[Attachment, ...]
    maps: tuple[MapSpec, ...]
    # where the request asked for the programs detached (attach=False)
    programs: tuple[ProgramFd, ...] = ()

    def fds(self) -> list[int]:
        return [a.fd for a in self.attachments] + [m.fd for m in self.maps] + [p.fd for p in self.programs]

    def close(self) -> None:
        for fd in self.fds():
            _close_quietly(fd)


class LoadFailed(Exception):
    """The child did not hand a program over.

    Attributes:
        output: everything it printed (stdout and stderr together).
        returncode: its exit status; None where it ran out of time.
    """

    def __init__(self, message: str, output: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.returncode = returncode


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def load(
    text: str, cflags: list[str], timeout_s: float, perf_events: Sequence[PerfEvent] = (), attach: bool = True
) -> Loaded:
    """Compile and load `text` in a child process, and attach `perf_events`; slow (clang runs).

    `attach` False: hand the programs over detached instead (Loaded.programs),
    for orac to attach when it needs them (probes/ebpf/attach.py).

    Raises:
        LoadFailed: the child failed (its output says why) or timed out.
    """
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = child_env()
    with parent_end:
        with child_end:
            proc = subprocess.Popen(
                [sys.executable, "-m", "probes.ebpf.loader", str(child_end.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(child_end.fileno(),),
                env=env,
            )
        # Only the child holds its end now: its exit is the socket's end of file.
        request = json.dumps(
            {"text": text, "cflags": cflags, "perf_events": [asdict(event) for event in perf_events], "attach": attach}
        ).encode()
        try:
            out, _ = proc.communicate(request, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise LoadFailed(f"timed out after {timeout_s:g} s", out.decode("utf-8", "replace"), None) from None
        output = out.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise LoadFailed(f"the loader exited with status {proc.returncode}", output, proc.returncode)
        parent_end.setblocking(False)
        message, fds, flags = _receive_all(parent_end)
        if not message and not fds:
            raise LoadFailed("the loader exited without handing the program over", output, 0)
        return _parse(message, fds, flags, output)


def _receive(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """One message and the descriptors it carries, close-on-exec.

    socket.recv_fds would do, but before Python 3.12 it drops its flags
    argument, MSG_CMSG_CLOEXEC with it: orac's other children would inherit
    the descriptors, and with them the programs.
    """
    fds = array.array("i")
    message, ancillary, flags, _ = sock.recvmsg(
        MESSAGE_BYTES, socket.CMSG_SPACE(MAX_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return message, list(fds), flags


def _receive_all(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """The child's description and every descriptor it sent, from a non-blocking socket.

    The child has exited, so whatever it sent is queued: the first message
    (the description) and, for more than MAX_FDS descriptors, MORE_FDS
    messages with the rest, then the end of file (an empty message).
    """
    try:
        message, fds, flags = _receive(sock)
    except BlockingIOError:
        return b"", [], 0
    while True:
        try:
            more, more_fds, more_flags = _receive(sock)
        except BlockingIOError:
            break
        if not more and not more_fds:
            break
        fds += more_fds
        flags |= more_flags
    return message, fds, flags


def _parse(message: bytes, fds: list[int], flags: int, output: str) -> Loaded:
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise LoadFailed("the loader's message was cut short", output, 0)
        described = json.loads(message)
        attachments = described["attachments"]
        maps = described["maps"]
        programs = described.get("programs", [])
        if len(fds) != len(attachments) + len(maps) + len(programs):
            raise LoadFailed(
                f"the loader sent {len(fds)} descriptors for {len(attachments)} attachments, {len(maps)} maps "
                f"and {len(programs)} programs",
                output,
                0,
            )
        it = iter(fds)
        return Loaded(
            attachments=tuple(Attachment(a["kind"], a["name"], next(it)) for a in attachments),
            maps=tuple(
                MapSpec(m["name"], m["type"], m["key_size"], m["value_size"], m["max_entries"], next(it)) for m in maps
            ),
            programs=tuple(ProgramFd(p["kind"], p["target"], next(it)) for p in programs),
        )
    except LoadFailed:
        for fd in fds:
            _close_quietly(fd)
        raise
    except (ValueError, KeyError, TypeError) as exc:
        for fd in fds:
            _close_quietly(fd)
        raise LoadFailed(f"the loader's message does not parse: {exc}", output, 0) from None


# ---- the child ----------------------------------------------------------------------


def _detached_programs(bpf: object, perf_events: list[dict[str, object]]) -> tuple[list[dict[str, object]], list[int]]:
    """The programs of a loaded bcc BPF object, to be attached by orac, and their descriptors.

    bcc attached those it names by their prefix as it loaded them; this
    process's copies of those attachments close as it exits.
    """
    from bcc import BPF

    programs: list[dict[str, object]] = []
    fds: list[int] = []
    for name, fn in bpf.funcs.items():  # type: ignore[attr-defined]
        if name.startswith(b"raw_tracepoint__"):
            programs.append({"kind": "raw_tracepoint", "target": name[len(b"raw_tracepoint__") :].decode()})
        elif name.startswith(b"tracepoint__"):
            programs.append({"kind": "tracepoint", "target": name[len(b"tracepoint__") :].decode().replace("__", ":")})
        else:
            continue
        fds.append(fn.fd)
    for fn_name in dict.fromkeys(str(event["fn_name"]) for event in perf_events):
        programs.append({"kind": PERF_EVENT_KIND, "target": fn_name})
        fds.append(bpf.load_func(fn_name.encode(), BPF.PERF_EVENT).fd)  # type: ignore[attr-defined]
    return programs, fds


def _describe(bpf: object) -> tuple[list[dict[str, object]], list[dict[str, object]], list[int]]:
    """Attachments and maps of a loaded bcc BPF object, and their descriptors in that order."""
    import ctypes

    from bcc.libbcc import lib

    for attribute, kind in UNSUPPORTED_KINDS.items():
        if getattr(bpf, attribute, None):
            print(f"orac's loader cannot hand over {kind}: the program must attach otherwise", file=sys.stderr)
            sys.stderr.flush()
            os._exit(EXIT_UNSUPPORTED)
    attachments: list[dict[str, object]] = []
    fds: list[int] = []
    for attribute, kind in ATTACHMENT_KINDS.items():
        for name, fd in getattr(bpf, attribute, {}).items():
            attachments.append({"kind": kind, "name": name.decode() if isinstance(name, bytes) else str(name)})
            fds.append(fd)
    for (ev_type, ev_config), per_cpu in getattr(bpf, "open_perf_events", {}).items():
        for cpu, fd in sorted(per_cpu.items()):
            attachments.append({"kind": PERF_EVENT_KIND, "name": f"{ev_type}:{ev_config}/cpu{cpu}"})
            fds.append(fd)

    # libbcc has these; bcc's Python module does not declare them.
    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_table_key_size_id.restype = ctypes.c_size_t
    lib.bpf_table_key_size_id.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_table_leaf_size_id.restype = ctypes.c_size_t
    lib.bpf_table_leaf_size_id.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    module = bpf.module  # type: ignore[attr-defined]
    maps: list[dict[str, object]] = []
    for i in range(lib.bpf_num_tables(module)):
        name = lib.bpf_table_name(module, i)
        fd = lib.bpf_table_fd(module, name)
        if fd < 0:
            # Declared but not created (an extern table shared with another program).
            continue
        maps.append(
            {
                "name": name.decode(),
                "type": lib.bpf_table_type_id(module, i),
                "key_size": lib.bpf_table_key_size_id(module, i),
                "value_size": lib.bpf_table_leaf_size_id(module, i),
                "max_entries": lib.bpf_table_max_entries_id(module, i),
            }
        )
        fds.append(fd)
    return attachments, maps, fds


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    request = json.loads(sys.stdin.buffer.read())
    try:
        from bcc import BPF
    except OSError as exc:
        # The module is there but libbcc.so is not (or does not load).
        print(f"bcc's library does not load: {exc}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(EXIT_NO_BCC)
    except ImportError as exc:
        print(f"bcc's Python module does not import: {exc}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(EXIT_NO_BCC)
    # An exception here (clang's errors, the verifier's, an attach failure)
    # ends the child with a traceback after what bcc printed: status 1.
    bpf = BPF(text=request["text"].encode(), cflags=request["cflags"])
    programs: list[dict[str, object]] = []
    program_fds: list[int] = []
    if not request.get("attach", True):
        programs, program_fds = _detached_programs(bpf, request["perf_events"])
        request["perf_events"] = []
    for event in request["perf_events"]:
        bpf.attach_perf_event(
            ev_type=event["type"],
            ev_config=event["config"],
            fn_name=event["fn_name"].encode(),
            sample_period=event["sample_period"],
            sample_freq=event["sample_freq"],
            cpu=event["cpu"],
        )
    attachments, maps, fds = _describe(bpf)
    if programs:
        # Only the programs: the attachments bcc made close with this process.
        attachments, fds = [], fds[len(fds) - len(maps) :] + program_fds
    # A message carries at most MAX_FDS descriptors, and a perf event per CPU
    # on a big machine is more: the rest follow in further messages.
    socket.send_fds(sock, [json.dumps({"attachments": attachments, "maps": maps, "programs": programs}).encode()], fds[:MAX_FDS])
    for start in range(MAX_FDS, len(fds), MAX_FDS):
        socket.send_fds(sock, [MORE_FDS], fds[start : start + MAX_FDS])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip bcc's atexit cleanup: closing this process's copies happens at
    # exit anyway, and orac's copies keep everything attached.
    os._exit(0)


if __name__ == "__main__":
    main()
