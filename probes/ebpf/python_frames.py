"""The user-space side of python_frames.bpf.h: where a CPython process keeps its frames, and names for what was read.

A program that includes python_frames.bpf.h (the profile, the off-CPU
probe) reads a thread's Python frames in the kernel at the moment it takes
its native stack. `PythonStacks` tells it, for one process, the offsets of
that process's interpreter version and each thread's state address, and
names the code objects it kept (probes/host/cpython_frames.py).
`with_python_frames` puts those frames where the interpreter's own frames
are in the native stack: below the innermost `_PyEval_EvalFrameDefault`
stays what the Python code called natively (a C extension's loop, libc's
recv, the kernel); above it the Python callers replace the interpreter's
frames, whose callers Debian's python3 (built without frame pointers) loses
anyway.
"""

from __future__ import annotations

import struct

from probes.ebpf.bpf import BpfMap
from probes.ebpf.maps import ARRAY_INDEX
from probes.ebpf.programs import LoadedProgram
from probes.host.cpython_frames import CPythonProcess, FramesUnreadable, python_version
from probes.symbols.elf import UNKNOWN

# Python frames kept per stack, innermost first (a key holds their hash;
# 62 x 8 bytes keeps a stack within the 512 bytes a BPF program's own stack has).
PY_DEPTH = 62
PY_STACK_ENTRIES = 2048
PY_THREADS = 4096
# python_frames.bpf.h's options, for build_program
DEFINES = {"PY_DEPTH": PY_DEPTH, "PY_STACK_ENTRIES": PY_STACK_ENTRIES, "PY_THREADS": PY_THREADS}
# The interpreter's frame whose callers the Python frames stand for.
EVAL_FRAME = "_PyEval_EvalFrameDefault"

# python_frames.bpf.h's structs, native byte order
PY_HASH = struct.Struct("=Q")
_PY_STACK = struct.Struct(f"={PY_DEPTH}Q")
_PY_LAYOUT = struct.Struct("=8I")
_PY_THREAD = struct.Struct("=I")


def with_python_frames(user: tuple[str, ...], python: tuple[str, ...]) -> tuple[str, ...]:
    """A native user stack (root first) with the Python frames (outermost first) in place of the interpreter's.

    What the innermost eval frame ran natively stays below the Python
    frames; the interpreter's frames from it to the root go. Without an
    eval frame (a stack cut short, an interpreter without symbols), the
    Python frames go above the native stack, less its unknown root frames.
    """
    native = user
    for i in range(len(user) - 1, -1, -1):
        if user[i] == EVAL_FRAME:
            native = user[i + 1:]
            break
    # Frames the unwinder could not place, at the root end of what stays, were the
    # interpreter's (code without frame pointers): the Python frames say what they ran.
    while native and native[0] == UNKNOWN:
        native = native[1:]
    return python + native


class PythonStacks:
    """The Python side of a program for one process: the layout and thread states it reads, and names.

    For anything but a CPython 3.11+ process (and for `pid` None: nobody)
    the kernel side is told to read nothing (`enabled` 0), and `note` says
    why for a Python process.
    """

    def __init__(self, pid: int | None, bpf: LoadedProgram) -> None:
        self.pid = pid
        self._layout, self._threads_map = bpf["py_layout"], bpf["py_threads"]
        self._stacks: tuple[BpfMap, BpfMap] = (bpf["py_stacks0"], bpf["py_stacks1"])
        self._reader: CPythonProcess | None = None
        self._tids: set[int] = set()
        # (parity, hash) -> frames, for stacks that stay in their map over several ticks
        self._names: dict[tuple[int, int], tuple[str, ...]] = {}
        self.note = ""
        enabled = (0,) * 8
        try:
            version = python_version(pid) if pid is not None else None
        except PermissionError:
            version = None
        if pid is not None and version is not None:
            major, minor = (int(part) for part in version.split("."))
            try:
                if (major, minor) < (3, 11):
                    raise FramesUnreadable(f"Python {version}: orac reads the frames of 3.11 and newer")
                self._reader = CPythonProcess(pid, (major, minor))
                lay = self._reader.layout
                cframe = lay.tstate_cframe is not None
                enabled = (1, int(cframe), lay.tstate_cframe or 0, lay.current_frame, lay.frame_previous,
                           lay.frame_code, lay.frame_owner, 0)
            except FramesUnreadable as e:
                self.note = str(e)
        # an array is rewritten at each use of a prepared program (probes/ebpf/prepared.py)
        self._layout.update(ARRAY_INDEX.pack(0), _PY_LAYOUT.pack(*enabled))
        if self._reader is not None:
            self.follow_threads()

    @property
    def reading(self) -> bool:
        return self._reader is not None

    def follow_threads(self) -> None:
        """Tell the kernel side each thread's state address: new threads in, gone ones out."""
        if self._reader is None:
            return
        try:
            threads = dict(self._reader.threads())
        except OSError:
            return  # the process is exiting: its threads stay until the probe stops
        for tid, tstate in threads.items():
            self._threads_map.update(_PY_THREAD.pack(tid), PY_HASH.pack(tstate))
        for tid in self._tids - threads.keys():
            self._threads_map.delete(_PY_THREAD.pack(tid))
        self._tids = set(threads)

    def _named(self, raw: bytes) -> tuple[str, ...]:
        assert self._reader is not None
        return self._reader.name_stack([c for c in _PY_STACK.unpack(raw) if c])

    def take(self, parity: int, hashes: set[int]) -> dict[int, tuple[str, ...]]:
        """The Python frames (outermost first) of each hash, for stacks read within one tick; empties that map.

        A stack with a code object that cannot be read (freed since, or read
        while the thread changed it) is left out: its samples keep their
        native stack.
        """
        table = self._stacks[parity]
        out: dict[int, tuple[str, ...]] = {}
        for py in hashes:
            key = PY_HASH.pack(py)
            value = table.lookup(key)
            if value is None or self._reader is None:
                continue
            table.delete(key)
            named = self._named(value)
            if named:
                out[py] = named
        self.empty(parity)
        return out

    def name(self, parity: int, py: int) -> tuple[str, ...]:
        """The Python frames of one hash in the map of `parity`, which keeps them until `empty`; () if unknown."""
        names = self._names.get((parity, py))
        if names is None:
            value = self._stacks[parity].lookup(PY_HASH.pack(py))
            names = () if value is None or self._reader is None else self._named(value)
            self._names[parity, py] = names
        return names

    def empty(self, parity: int) -> None:
        """Empty the map of `parity`: nothing may write it until the program is told it may again."""
        self._stacks[parity].clear()
        self._names = {k: v for k, v in self._names.items() if k[0] != parity}
        if self._reader is not None:
            # code objects may be freed and their addresses reused from here on
            self._reader.forget_code()

    def close(self) -> None:
        """Stop reading: the kernel side reads nobody's frames from now on."""
        self._layout.update(ARRAY_INDEX.pack(0), _PY_LAYOUT.pack(*(0,) * 8))
        for tid in self._tids:
            self._threads_map.delete(_PY_THREAD.pack(tid))
        self._tids = set()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
