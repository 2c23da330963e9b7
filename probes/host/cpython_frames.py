"""A CPython 3.11+ process's threads and Python frames, read from its memory without stopping it.

The "python" probe sampled with py-spy: 3.5 to 5 % of a CPU at 99 Hz on
the development VM (benchmarks/python_stacks), over issue 19's 2 %. Most of
what py-spy does per sample is general (any version, native unwinding); for
3.11 and newer a sample is a handful of reads, which this module does
itself through /proc/PID/mem (the permission is ptrace's, as for
process_vm_readv): the interpreter's thread states from `_PyRuntime`, each
thread's chain of `_PyInterpreterFrame`s, and each code object's name, file
and first line (cached by address, forgotten with `forget_code`, so an
address that a freed code object left to a new one is right again soon).

Offsets: 3.13 and newer publish them in `_PyRuntime.debug_offsets`
(`_Py_DebugOffsets`, whose own layout is fixed within a minor version: the
3.13 one is read here, other minors are refused). 3.11 and 3.12 do not, so
their offsets are written below; they were taken with offsetof() from the
internal headers of 3.11.7 and 3.12.1 (`Py_BUILD_CORE`, pycore_runtime.h,
pycore_interp.h, pycore_frame.h, pycore_code.h), and Debian 12's 3.11.2
headers gave the same. These structures do not change within a minor
version; a build with another layout reads as garbage, which the code-type
check below turns into an error instead of a frame.

Only the main interpreter (the head of the list) is read: subinterpreters'
threads are not sampled.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from probes.host.procfs import PROC, read_text
from probes.symbols.elf import data_symbols

_Q = struct.Struct("<Q")
_I = struct.Struct("<i")
# The cookie at the start of _PyRuntime on 3.13+ (Include/internal/pycore_runtime.h).
_DEBUG_COOKIE = b"xdebugpy"
_DEBUG_OFFSETS_SIZE = 584  # sizeof(_Py_DebugOffsets) in 3.13
# A frame whose owner is the C stack (3.12+) is the interpreter's entry shim, not Python code.
_FRAME_OWNED_BY_CSTACK = 3
# Longer names and paths are cut: a code object's strings are never this long in practice.
_MAX_STRING = 4096
# A stack deeper than this is cut (deep recursion): the outermost frames are dropped.
MAX_DEPTH = 256
_MAX_THREADS = 4096
# A data stack chunk's frames start after its header (previous, size, top: pystate.h's _PyStackChunk).
_CHUNK_DATA = 24
# At most this much of a thread's data stack is read at once; frames below it are read one by one.
_MAX_DATASTACK_READ = 64 << 10
_STDLIB = re.compile(r"/lib/python\d\.\d+/")
_EXE_VERSION = re.compile(r"python(\d)\.(\d+)")
_LIB_VERSION = re.compile(r"libpython(\d)\.(\d+)")


def python_version(pid: int) -> str | None:
    """"3.11" for a CPython process, from its executable or a mapped libpython; None if neither names one.

    Raises PermissionError where this user may not read the process's
    executable link (another user's process): then nothing can be told.
    """
    try:
        exe = os.path.basename(os.readlink(f"{PROC}/{pid}/exe"))
    except PermissionError:
        raise
    except OSError:
        exe = ""
    match = _EXE_VERSION.search(exe)
    if match is None:
        match = _LIB_VERSION.search(read_text(f"{PROC}/{pid}/maps") or "")
    return f"{match[1]}.{match[2]}" if match else None



class FramesUnreadable(Exception):
    """The process's interpreter cannot be read (no permission, unknown layout, no _PyRuntime)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one CPython minor version keeps what a stack needs (byte offsets)."""

    runtime_interpreters_head: int
    interp_threads_head: int
    tstate_next: int
    tstate_native_thread_id: int
    # 3.11/3.12: tstate->cframe->current_frame; 3.13: tstate->current_frame (tstate_cframe None)
    tstate_cframe: int | None
    current_frame: int
    # the thread's stack of frames (pycore_frame.h: _PyStackChunk), datastack_top 8 bytes on (pystate.h)
    tstate_datastack_chunk: int
    frame_code: int
    frame_previous: int
    frame_instr: int  # prev_instr (3.11/3.12) or instr_ptr (3.13): the instruction being run
    frame_owner: int
    frame_size: int
    code_filename: int
    code_qualname: int
    code_firstlineno: int
    code_linetable: int
    code_adaptive: int  # where the code units start, for the instruction's offset
    unicode_length: int
    unicode_state: int
    ascii_size: int  # a compact ASCII string's characters start here
    compact_size: int  # a compact non-ASCII string's characters start here
    bytes_size: int
    bytes_sval: int

    @property
    def tstate_size(self) -> int:
        return max(self.tstate_next, self.tstate_native_thread_id, self.tstate_cframe or self.current_frame,
                   self.tstate_datastack_chunk + 8) + 8

    @property
    def code_size(self) -> int:
        return max(self.code_filename, self.code_qualname, self.code_firstlineno, self.code_linetable) + 8


LAYOUTS: dict[tuple[int, int], Layout] = {
    (3, 11): Layout(
        runtime_interpreters_head=40, interp_threads_head=16, tstate_next=8, tstate_native_thread_id=160,
        tstate_cframe=56, current_frame=8, tstate_datastack_chunk=296, frame_code=32, frame_previous=48, frame_instr=56, frame_owner=69,
        frame_size=80, code_filename=112, code_qualname=128, code_firstlineno=72, code_linetable=136,
        code_adaptive=184, unicode_length=16, unicode_state=32, ascii_size=48, compact_size=72,
        bytes_size=16, bytes_sval=32,
    ),
    (3, 12): Layout(
        runtime_interpreters_head=40, interp_threads_head=72, tstate_next=8, tstate_native_thread_id=144,
        tstate_cframe=56, current_frame=0, tstate_datastack_chunk=232, frame_code=0, frame_previous=8, frame_instr=56, frame_owner=70,
        frame_size=80, code_filename=112, code_qualname=128, code_firstlineno=68, code_linetable=136,
        code_adaptive=192, unicode_length=16, unicode_state=32, ascii_size=40, compact_size=56,
        bytes_size=16, bytes_sval=32,
    ),
}


def layout_from_debug_offsets(raw: bytes) -> Layout:
    """3.13's `_Py_DebugOffsets` (the start of _PyRuntime) as a Layout; raises FramesUnreadable otherwise."""
    if len(raw) < _DEBUG_OFFSETS_SIZE or raw[:8] != _DEBUG_COOKIE:
        raise FramesUnreadable("its _PyRuntime has no debug offsets")
    version = _Q.unpack_from(raw, 8)[0]
    if version >> 16 != 0x030D:
        raise FramesUnreadable(f"its debug offsets are of version {version >> 24}.{(version >> 16) & 0xFF}")
    if _Q.unpack_from(raw, 16)[0]:
        raise FramesUnreadable("it is a free-threaded build")
    at = struct.unpack_from("<72Q", raw, 8)  # at[i] is the u64 at byte 8 + 8 * i

    def field(offset: int) -> int:
        return int(at[(offset - 8) // 8])

    # The byte offsets of each field inside _Py_DebugOffsets, from offsetof() on 3.13.0's header.
    unicode_compact = field(560) + 16  # PyCompactUnicodeObject: utf8_length and utf8 after the ASCII header
    return Layout(
        runtime_interpreters_head=field(40), interp_threads_head=field(72), tstate_next=field(168),
        tstate_native_thread_id=field(200), tstate_cframe=None, current_frame=field(184),
        tstate_datastack_chunk=field(208),
        frame_code=field(240), frame_previous=field(232), frame_instr=field(248), frame_owner=field(264),
        frame_size=field(224), code_filename=field(280), code_qualname=field(296), code_firstlineno=field(312),
        code_linetable=field(304), code_adaptive=field(344), unicode_length=field(552),
        unicode_state=field(544), ascii_size=field(560), compact_size=unicode_compact,
        bytes_size=field(520), bytes_sval=field(528),
    )


@dataclass(frozen=True, slots=True)
class Code:
    """What a stack shows of one code object."""

    name: str  # its qualified name, "Thread.run"
    filename: str  # shortened as py-spy does: "threading.py", "numpy/core/numeric.py"
    firstlineno: int
    linetable: bytes

    def label(self, line: int | None = None) -> str:
        """"name (file:line)": with `line`, where it is; else its def line (py-spy's --function)."""
        return f"{self.name} ({self.filename}:{self.firstlineno if line is None else line})"


def short_filename(path: str) -> str:
    """A module's path as people name it: after site-packages or the standard library, else the file alone."""
    for marker in ("/site-packages/", "/dist-packages/"):
        _, found, rest = path.rpartition(marker)
        if found:
            return rest
    stdlib = [m.end() for m in _STDLIB.finditer(path)]
    if stdlib:
        return path[stdlib[-1]:]
    return os.path.basename(path) or path


def _varint(table: bytes, i: int) -> tuple[int, int]:
    b = table[i]
    i += 1
    value, shift = b & 63, 0
    while b & 64:
        b = table[i]
        i += 1
        shift += 6
        value |= (b & 63) << shift
    return value, i


def _svarint(table: bytes, i: int) -> tuple[int, int]:
    value, i = _varint(table, i)
    return (-(value >> 1) if value & 1 else value >> 1), i


def line_of(linetable: bytes, firstlineno: int, code_unit: int) -> int | None:
    """The source line of the instruction at `code_unit`, from a 3.11+ location table.

    The format of CPython's Objects/locations.md: entries of one to eight
    code units, each a first byte (bit 7 set, the kind in bits 3-6, the
    length - 1 in bits 0-2) and the kind's data; every kind but "no
    location" moves the line. None where the instruction has no line.
    """
    line, unit, i, n = firstlineno, 0, 0, len(linetable)
    try:
        while i < n:
            first = linetable[i]
            i += 1
            kind, length = (first >> 3) & 15, (first & 7) + 1
            delta: int | None
            if kind == 15:
                delta = None
            elif kind == 14:
                delta, i = _svarint(linetable, i)
                for _ in range(3):  # end line, start and end columns
                    _, i = _varint(linetable, i)
            elif kind == 13:
                delta, i = _svarint(linetable, i)
            elif kind >= 10:
                delta, i = kind - 10, i + 2
            else:
                delta, i = 0, i + 1
            if delta is not None:
                line += delta
            if unit <= code_unit < unit + length:
                return None if delta is None else line
            unit += length
    except IndexError:
        return None
    return None


class CPythonProcess:
    """Reads one CPython 3.11+ process's thread states and frames.

    Raises FramesUnreadable from the constructor where it cannot (a version
    without a layout here, no _PyRuntime symbol, no permission to read the
    process's memory). Not thread-safe: one caller at a time.
    """

    def __init__(self, pid: int, version: tuple[int, int]) -> None:
        self.pid = pid
        self.version = version
        runtime, code_type = self._symbols()
        try:
            self._mem = os.open(f"{PROC}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            raise FramesUnreadable("its memory is not readable by this user: run orac as root or as its user") from None
        except OSError as e:
            raise FramesUnreadable(f"its memory cannot be opened: {e.strerror}") from None
        try:
            if version >= (3, 13):
                self.layout = layout_from_debug_offsets(self.read(runtime, _DEBUG_OFFSETS_SIZE))
            elif version in LAYOUTS:
                self.layout = LAYOUTS[version]
            else:
                raise FramesUnreadable(f"Python {version[0]}.{version[1]} frames are not known here")
            self._interp_head = runtime + self.layout.runtime_interpreters_head
            self._code_type = code_type
            self._codes: dict[int, Code | None] = {}
            self.threads()  # fails here, not at the first sample, where nothing can be read
        except (FramesUnreadable, OSError) as e:
            os.close(self._mem)
            if isinstance(e, FramesUnreadable):
                raise
            raise FramesUnreadable(f"its interpreter state cannot be read: {e.strerror or e}") from None

    def _symbols(self) -> tuple[int, int]:
        """The running addresses of _PyRuntime and PyCode_Type, from the executable or its libpython."""
        maps = read_text(f"{PROC}/{self.pid}/maps")
        if maps is None:
            raise FramesUnreadable("its memory map is not readable")
        try:
            exe = os.readlink(f"{PROC}/{self.pid}/exe")
        except OSError:
            exe = ""
        # path -> (start, file offset) of its lowest-offset mapping
        files: dict[str, tuple[int, int]] = {}
        for line in maps.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6 or not parts[5].startswith("/"):
                continue
            start, offset = int(parts[0].partition("-")[0], 16), int(parts[2], 16)
            if parts[5] not in files or offset < files[parts[5]][1]:
                files[parts[5]] = (start, offset)
        candidates = [exe] + [p for p in files if os.path.basename(p).startswith("libpython")]
        for path in candidates:
            if path not in files:
                continue
            try:
                # through the process's root: the file as its container sees it
                found, loads = data_symbols(f"{PROC}/{self.pid}/root{path}", ("_PyRuntime", "PyCode_Type"))
            except (OSError, ValueError):
                continue
            start, offset = files[path]
            at = loads.vaddr(offset)
            if len(found) < 2 or at is None:
                continue
            bias = start - at
            return found["_PyRuntime"] + bias, found["PyCode_Type"] + bias
        raise FramesUnreadable("neither its executable nor a libpython it maps names _PyRuntime")

    def close(self) -> None:
        os.close(self._mem)

    def read(self, addr: int, size: int) -> bytes:
        """`size` bytes at `addr` of the process; raises OSError where they are not mapped."""
        data = os.pread(self._mem, size, addr)
        if len(data) != size:
            raise OSError(f"short read at {addr:#x}")
        return data

    def _pointer(self, addr: int) -> int:
        return int(_Q.unpack(self.read(addr, 8))[0])

    def threads(self) -> list[tuple[int, int]]:
        """(native thread id, thread state address) of each thread of the main interpreter."""
        layout = self.layout
        interp = self._pointer(self._interp_head)
        if not interp:
            return []
        tstate = self._pointer(interp + layout.interp_threads_head)
        out: list[tuple[int, int]] = []
        while tstate and len(out) < _MAX_THREADS:
            raw = self.read(tstate, layout.tstate_size)
            out.append((int(_Q.unpack_from(raw, layout.tstate_native_thread_id)[0]), tstate))
            tstate = _Q.unpack_from(raw, layout.tstate_next)[0]
        return out

    def stack(self, tstate: int, lines: bool = False) -> tuple[str, ...]:
        """One thread's Python frames, outermost first: "name (file:def line)", or the line it runs with `lines`.

        The frames a thread runs live in its data stack, so the used part of
        that is read in one go and the frames walked in the copy; a frame
        elsewhere (a generator's, an older chunk's) is read on its own.
        Raises OSError where a read fails (the thread moved on while read).
        """
        layout = self.layout
        read, size = self.read, layout.frame_size
        raw = read(tstate, layout.tstate_size)
        if layout.tstate_cframe is not None:
            cframe = _Q.unpack_from(raw, layout.tstate_cframe)[0]
            frame = self._pointer(cframe + layout.current_frame) if cframe else 0
        else:
            frame = _Q.unpack_from(raw, layout.current_frame)[0]
        chunk, top = struct.unpack_from("<QQ", raw, layout.tstate_datastack_chunk)
        low = max(chunk + _CHUNK_DATA, top - _MAX_DATASTACK_READ)
        block = read(low, top - low) if chunk and frame and low < top else b""
        frames: list[str] = []
        while frame and len(frames) < MAX_DEPTH:
            if low <= frame and frame + size <= low + len(block):
                buf, at = block, frame - low
            else:
                buf, at = read(frame, size), 0
            frame = _Q.unpack_from(buf, at + layout.frame_previous)[0]
            if buf[at + layout.frame_owner] == _FRAME_OWNED_BY_CSTACK:
                continue
            code_addr = _Q.unpack_from(buf, at + layout.frame_code)[0]
            code = self._cached_code(code_addr)
            if code is None:
                raise OSError(f"no code object at {code_addr:#x}")
            if lines:
                instr = _Q.unpack_from(buf, at + layout.frame_instr)[0]
                unit = (instr - code_addr - layout.code_adaptive) // 2
                frames.append(code.label(line_of(code.linetable, code.firstlineno, unit) or code.firstlineno))
            else:
                frames.append(code.label())
        frames.reverse()
        return tuple(frames)

    def name_stack(self, codes: list[int]) -> tuple[str, ...]:
        """Code object addresses (innermost first, as the profile's kernel side keeps them) as frames, outermost first.

        An address with its low bit set is the interpreter's entry shim, not
        Python code. () where one cannot be read as a code object.
        """
        frames = []
        for addr in codes:
            if addr & 1:
                continue
            code = self._cached_code(addr)
            if code is None:
                return ()
            frames.append(code.label())
        frames.reverse()
        return tuple(frames)

    def forget_code(self) -> None:
        """Read code objects again from the next stack on (their addresses may have been reused)."""
        self._codes.clear()

    def _cached_code(self, addr: int) -> Code | None:
        if addr not in self._codes:
            self._codes[addr] = self._code(addr)
        return self._codes[addr]

    def _code(self, addr: int) -> Code | None:
        """The code object at `addr`, or None where it is not one (a frame read while it changed)."""
        layout = self.layout
        try:
            raw = self.read(addr, layout.code_size)
            if _Q.unpack_from(raw, 8)[0] != self._code_type:  # ob_type
                return None
            filename = self._string(_Q.unpack_from(raw, layout.code_filename)[0])
            name = self._string(_Q.unpack_from(raw, layout.code_qualname)[0])
            table = self._bytes(_Q.unpack_from(raw, layout.code_linetable)[0])
        except (OSError, ValueError):
            return None
        return Code(name, short_filename(filename), _I.unpack_from(raw, layout.code_firstlineno)[0], table)

    def _string(self, addr: int) -> str:
        layout = self.layout
        head = self.read(addr, layout.ascii_size)
        length = min(_Q.unpack_from(head, layout.unicode_length)[0], _MAX_STRING)
        state = _I.unpack_from(head, layout.unicode_state)[0]
        kind, compact, ascii = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
        if not compact or kind not in (1, 2, 4):
            raise ValueError("not a compact string")
        if ascii:
            return self.read(addr + layout.ascii_size, length).decode("ascii", "replace")
        data = self.read(addr + layout.compact_size, length * kind)
        return data.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind], "replace")

    def _bytes(self, addr: int) -> bytes:
        layout = self.layout
        size = _Q.unpack(self.read(addr + layout.bytes_size, 8))[0]
        if size > 1 << 20:
            raise ValueError("a line table this long is not one")
        return self.read(addr + layout.bytes_sval, size)
