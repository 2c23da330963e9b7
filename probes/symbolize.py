"""Symbolize eBPF stack traces at sample time: addresses to function names.

The off-CPU and on-CPU probes read stacks from a BPF stack map
(`bpf_get_stackid`): arrays of kernel addresses and of user addresses of one
process, leaf first, zero-padded. Addresses mean nothing once the process has
exited or in a replay, so a probe turns them into names while it samples, on
the collector thread, once per tick, for at most a few hundred new addresses.

    symbolizer = Symbolizer()
    ...                                   # once per tick, on the collector thread:
    frames = symbolizer.stack(tgid, kernel_addrs, user_addrs)   # root first
    symbolizer.tick()

API:
    Symbolizer.stack(pid, kernel_addrs, user_addrs) -> tuple[str, ...]
        Frames root first (user, then kernel), one per address; `folded()`
        joins them for flamegraph.pl. Symbolizer.tick() once per sample.
    KernelSymbols.name(addr) -> "do_nanosleep"; .name_offset(addr) ->
        "do_nanosleep+0x1f"; .lookup(addr) -> (name, offset) | None;
        .available / .unavailable_reason.
    UserSymbols.resolve(pid, addrs, offsets=False, return_addresses=False)
        -> list[str]; .tick(); counters (lookups, unknown, gone_processes,
        binaries_loaded, binary_errors) for the probe to show what it lost.
    ElfSymbols.from_path(path).lookup(vaddr) -> (name, offset) | None, for
        one ELF file.

Everything here is plain Python and the standard library: no bcc (orac keeps
it out of its own process), no pyelftools (a few `struct` formats read all of
ELF that symbolization needs), no textual.

Names:
    - A function name, unmangled as the binary spells it (C++ names stay
      mangled: `_ZN3foo3barEv`; demangling is the view's business, if ever).
    - `name@plt` for a PLT stub, `libfoo.so+0x1234` (the ELF virtual address,
      what `addr2line -e libfoo.so 0x1234` takes) when the binary is known
      but has no symbol there, like perf.
    - `[vdso]`, `[vsyscall]`, `[anon]` (anonymous executable memory: JIT code
      without a perf map) or the mapping's own bracketed name.
    - `[unknown]` (UNKNOWN) when nothing is known: an exited process, a
      garbage frame, kernel addresses hidden by kptr_restrict.

Kernel symbols come from /proc/kallsyms (parsed once, lazily; reparsed at most
once a minute when addresses are missed, since modules and BPF programs come
and go). User symbols come from each mapped ELF file's .symtab, or .dynsym
when stripped, plus MiniDebugInfo (.gnu_debugdata) and build-id debug files
(/usr/lib/debug/.build-id/xx/yyyy.debug) when present, and from
/tmp/perf-PID.map for JIT code (node --perf-basic-prof, Java agents, Python
3.12's perf trampoline).

Memory: files are mmap'ed while their tables are read, then unmapped; only
function symbols are kept, as compact arrays (address, size, name offset) and
one bytes blob of names, per binary, shared by every process that maps it
(keyed by device and inode). Processes and binaries not used for a while are
forgotten (`tick()` ages them), and both caches are bounded LRUs.

Not thread-safe: one Symbolizer belongs to one collector thread.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from probes.aside import run_module
from probes.procfs import read_bytes

UNKNOWN = "[unknown]"
ANON = "[anon]"

PROC = "/proc"

def _read_all(path: str) -> bytes | None:
    """The whole file, or None when it is missing or unreadable.

    Reads until EOF: seq_file files under /proc (maps, kallsyms) return about
    a page per read(), so one short read does not mean the end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _read_text(path: str) -> str:
    data = _read_all(path)
    return "" if data is None else data.decode("utf-8", "replace")


# ---- ELF ----------------------------------------------------------------------------

_PT_LOAD = 1
_PT_NOTE = 4
_SHT_SYMTAB = 2
_SHT_RELA = 4
_SHT_NOTE = 7
_SHT_NOBITS = 8
_SHT_DYNSYM = 11
_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_STB_LOCAL = 0
_SHN_UNDEF = 0
_SHN_XINDEX = 0xFFFF
_NT_GNU_BUILD_ID = 3
_EM_X86_64 = 62
_R_X86_64_GLOB_DAT = 6
_R_X86_64_JUMP_SLOT = 7
_R_X86_64_IRELATIVE = 37


class _Section(NamedTuple):
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class _Functions:
    """Function symbols as they are collected: columns, not a tuple per symbol.

    A big C++ binary has a million functions; a list of (address, rank,
    size, name) tuples would cost ~200 bytes each while loading, these
    columns cost ~30.
    """

    __slots__ = ("addrs", "ranks", "sizes", "names", "ends")

    def __init__(self) -> None:
        self.addrs = array("Q")
        self.ranks = array("H")
        self.sizes = array("Q")
        self.names = bytearray()
        self.ends = array("I")  # where each name ends in `names`

    def __len__(self) -> int:
        return len(self.addrs)

    def add(self, addr: int, rank: int, size: int, name: bytes) -> None:
        self.addrs.append(addr)
        self.ranks.append(rank)
        self.sizes.append(size)
        self.names += name
        self.ends.append(len(self.names))

    def name(self, i: int) -> bytes:
        return bytes(self.names[self.ends[i - 1] if i else 0: self.ends[i]])


class _Elf:
    """The headers of one ELF image held in a buffer (an mmap or bytes).

    Reads the file header, program headers and section headers; tables are
    read on demand by the methods below. Raises ValueError for anything that
    is not a well-formed ELF file (bounds are checked, struct errors become
    ValueError), so a corrupt or truncated file costs one "[unknown]", never
    an exception in the collector.
    """

    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.size = len(buf)
        if self.size < 52 or bytes(buf[:4]) != b"\x7fELF":
            raise ValueError("not an ELF file")
        elf_class, data = buf[4], buf[5]
        if data not in (1, 2) or elf_class not in (1, 2):
            raise ValueError("unsupported ELF class or byte order")
        e = "<" if data == 1 else ">"
        self.is64 = elf_class == 2
        if self.is64:
            ehdr, self._phdr, self._shdr = "HHIQQQIHHHHHH", "IIQQQQQQ", "IIQQQQIIQQ"
            self._sym, self._rela = e + "IBBHQQ", e + "QQq"
        else:
            ehdr, self._phdr, self._shdr = "HHIIIIIHHHHHH", "IIIIIIII", "IIIIIIIIII"
            self._sym, self._rela = e + "IIIBBH", e + "IIi"
        self._e = e
        self._segments: list[tuple[int, int, int]] = []
        try:
            (_type, self.machine, _v, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
             shentsize, shnum, shstrndx) = struct.unpack_from(e + ehdr, buf, 16)
            self.loads = self._read_loads(phoff, phentsize, phnum)
            self.notes = [(o, s) for t, o, s in self._segments if t == _PT_NOTE]
            self.sections = self._read_sections(shoff, shentsize, shnum, shstrndx)
        except struct.error as exc:
            raise ValueError(f"truncated ELF file: {exc}") from None

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ValueError("ELF table outside the file")

    def _read_loads(self, phoff: int, phentsize: int, phnum: int) -> list[tuple[int, int, int]]:
        fmt = self._e + self._phdr
        loads: list[tuple[int, int, int]] = []
        if phoff == 0 or phentsize < struct.calcsize(fmt):
            return loads
        self._check(phoff, phentsize * phnum)
        for i in range(phnum):
            f = struct.unpack_from(fmt, self.buf, phoff + i * phentsize)
            if self.is64:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = f[:6]
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = f[:5]
            self._segments.append((p_type, p_offset, p_filesz))
            if p_type == _PT_LOAD:
                loads.append((p_offset, p_vaddr, p_filesz))
        return loads

    def _read_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> list[_Section]:
        fmt = self._e + self._shdr
        if shoff == 0 or shentsize < struct.calcsize(fmt):
            return []
        raw = []
        self._check(shoff, shentsize)
        first = struct.unpack_from(fmt, self.buf, shoff)
        # More than 0xff00 sections: the real count and string table index
        # live in section 0 (sh_size and sh_link).
        if shnum == 0:
            shnum = first[5]
        if shstrndx == _SHN_XINDEX:
            shstrndx = first[6]
        self._check(shoff, shentsize * shnum)
        for i in range(shnum):
            (name, type_, _flags, addr, offset, size, link, _info, _align,
             entsize) = struct.unpack_from(fmt, self.buf, shoff + i * shentsize)
            raw.append((name, type_, addr, offset, size, link, entsize))
        names_at = raw[shstrndx][3] if 0 < shstrndx < len(raw) else None
        sections = []
        for name, type_, addr, offset, size, link, entsize in raw:
            sections.append(_Section(self._cstr(names_at + name) if names_at is not None else "",
                                     type_, addr, offset, size, link, entsize))
        return sections

    def _cstr(self, offset: int, end: int | None = None) -> str:
        return self._cbytes(offset, end).decode("utf-8", "replace")

    def _cbytes(self, offset: int, end: int | None = None) -> bytes:
        end = self.size if end is None else min(end, self.size)
        if not 0 <= offset < end:
            return b""
        stop = self.buf.find(b"\0", offset, end)
        return bytes(self.buf[offset: end if stop < 0 else stop])

    def section(self, name: str) -> _Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_bytes(self, section: _Section) -> bytes:
        if section.type == _SHT_NOBITS:
            return b""
        self._check(section.offset, section.size)
        return bytes(self.buf[section.offset: section.offset + section.size])

    def symbols(self, section: _Section) -> Iterable[tuple[int, int, int, int, int]]:
        """(name offset in the linked string table, st_info, st_shndx, value, size) per symbol."""
        if section.type == _SHT_NOBITS:
            return
        entsize = struct.calcsize(self._sym)
        count = section.size // entsize
        self._check(section.offset, count * entsize)
        with memoryview(self.buf) as whole, whole[section.offset: section.offset + count * entsize] as mv:
            if self.is64:
                for name, info, _other, shndx, value, size in struct.iter_unpack(self._sym, mv):
                    yield name, info, shndx, value, size
            else:
                for name, value, size, info, _other, shndx in struct.iter_unpack(self._sym, mv):
                    yield name, info, shndx, value, size

    def functions(self, section: _Section, into: _Functions | None = None) -> _Functions:
        """Defined function symbols (STT_FUNC, STT_GNU_IFUNC) of a symbol table.

        Each gets a rank that orders aliases at one address, lower preferred:
        a sized symbol, then fewer leading underscores (`getppid` over
        `__getppid`, `clock_gettime` over `__vdso_clock_gettime`), then
        global or weak over local.
        """
        out = _Functions() if into is None else into
        if not 0 <= section.link < len(self.sections):
            return out
        strtab = self.sections[section.link]
        if strtab.type == _SHT_NOBITS:
            return out
        self._check(strtab.offset, strtab.size)
        base, end = strtab.offset, strtab.offset + strtab.size
        find, buf, add = self.buf.find, self.buf, out.add
        for name_off, info, shndx, value, size in self.symbols(section):
            kind = info & 0xF
            if (kind != _STT_FUNC and kind != _STT_GNU_IFUNC) or shndx == _SHN_UNDEF or value == 0:
                continue
            start = base + name_off
            if start >= end:
                continue
            stop = find(b"\0", start, end)
            name = buf[start: end if stop < 0 else stop]
            if not name:
                continue
            underscores = min(len(name) - len(name.lstrip(b"_")), 50)
            add(value, (size == 0) * 1000 + underscores * 10 + ((info >> 4) == _STB_LOCAL), size, name)
        return out

    def symbol_names(self, section: _Section) -> list[bytes]:
        """Every name of a symbol table by index (for relocations)."""
        strtab = self.sections[section.link] if 0 <= section.link < len(self.sections) else None
        if strtab is None or strtab.type == _SHT_NOBITS:
            return []
        end = strtab.offset + strtab.size
        return [self._cbytes(strtab.offset + n, end) for n, *_ in self.symbols(section)]

    def build_id(self) -> str | None:
        """The GNU build-id as hex, from the note sections or PT_NOTE segments."""
        places = [(s.offset, s.size) for s in self.sections if s.type == _SHT_NOTE] or self.notes
        for offset, size in places:
            end = min(offset + size, self.size)
            while offset + 12 <= end:
                namesz, descsz, type_ = struct.unpack_from(self._e + "III", self.buf, offset)
                name_at = offset + 12
                desc_at = name_at + ((namesz + 3) & ~3)
                if type_ == _NT_GNU_BUILD_ID and bytes(self.buf[name_at:name_at + namesz]) == b"GNU\0":
                    return bytes(self.buf[desc_at:desc_at + descsz]).hex() or None
                offset = desc_at + ((descsz + 3) & ~3)
        return None

    def plt_functions(self, functions: _Functions) -> None:
        """`name@plt` symbols for x86-64 PLT stubs, as objdump names them.

        Each stub jumps through a GOT slot (`jmp *disp32(%rip)`); the slot's
        relocation names the function. Matching by slot rather than by the
        stub's position is what makes this right for libc, whose stubs are not
        in relocation order. IRELATIVE slots (ifuncs) are named after the
        function at the resolver's address. Adds them to `functions`.
        """
        if self.machine != _EM_X86_64 or not self.is64:
            return
        slots: dict[int, bytes] = {}
        ifuncs: dict[int, int] = {}  # GOT slot -> resolver address
        # .rela.dyn (every GOT slot: long in big binaries) only serves .plt.got.
        relas = (".rela.plt", ".rela.dyn") if self.section(".plt.got") else (".rela.plt",)
        for rel in self.sections:
            if rel.type != _SHT_RELA or rel.name not in relas:
                continue
            names = None
            self._check(rel.offset, rel.size)
            for i in range(rel.size // 24):
                r_offset, r_info, addend = struct.unpack_from(self._rela, self.buf, rel.offset + i * 24)
                r_type, sym = r_info & 0xFFFFFFFF, r_info >> 32
                if r_type in (_R_X86_64_JUMP_SLOT, _R_X86_64_GLOB_DAT) and sym:
                    if names is None:
                        dynsym = self.sections[rel.link] if 0 < rel.link < len(self.sections) else None
                        names = self.symbol_names(dynsym) if dynsym else []
                    if sym < len(names) and names[sym]:
                        slots[r_offset] = names[sym]
                elif r_type == _R_X86_64_IRELATIVE and rel.name == ".rela.plt":
                    ifuncs[r_offset] = addend
        if ifuncs:
            wanted = set(ifuncs.values())
            at = {a: i for i, a in enumerate(functions.addrs) if a in wanted}
            for slot, addend in ifuncs.items():
                if addend in at:
                    slots[slot] = functions.name(at[addend])
        for name in (".plt", ".plt.sec", ".plt.got"):
            sec = self.section(name)
            if sec is None or sec.type == _SHT_NOBITS or not slots:
                continue
            code = self.section_bytes(sec)
            step = 8 if name == ".plt.got" and sec.entsize == 8 else 16
            for at in range(0, len(code) - 5, step):
                jmp = code.find(b"\xff\x25", at, at + 8)
                if jmp < 0 or jmp + 6 > len(code):
                    continue
                (disp,) = struct.unpack_from("<i", code, jmp + 2)
                target = slots.get(sec.addr + jmp + 6 + disp)
                if target is not None:
                    functions.add(sec.addr + at, 500, step, target + b"@plt")


class ElfSymbols:
    """The function symbols of one ELF file, and how its file offsets map to addresses.

    Built once per binary (`from_path` / `from_buffer`), then only looked up.
    `error` says why a file gave no symbols (unreadable, not ELF); lookups
    then fall back to module+offset.
    """

    __slots__ = ("loads", "addrs", "sizes", "name_at", "names", "build_id", "error", "used_tick")

    def __init__(self, loads: Sequence[tuple[int, int, int]] = (), functions: _Functions | None = None,
                 build_id: str | None = None, error: str | None = None) -> None:
        self.loads = tuple(sorted(loads))
        self.build_id = build_id
        self.error = error
        self.used_tick = 0
        self.addrs = array("Q")
        self.sizes = array("I")
        self.name_at = array("I", [0])
        names = bytearray()
        if functions:
            src_addrs, ranks, sizes, ends = functions.addrs, functions.ranks, functions.sizes, functions.ends
            # By address, then rank: the first symbol at an address wins.
            for i in sorted(range(len(src_addrs)), key=lambda i: (src_addrs[i] << 16) | ranks[i]):
                addr = src_addrs[i]
                if self.addrs and self.addrs[-1] == addr:
                    continue
                self.addrs.append(addr)
                self.sizes.append(min(sizes[i], 0xFFFFFFFF))
                names += functions.names[ends[i - 1] if i else 0: ends[i]]
                self.name_at.append(len(names))
        self.names = bytes(names)

    def __len__(self) -> int:
        return len(self.addrs)

    @property
    def memory_bytes(self) -> int:
        """What the tables take, roughly (for benchmarks and the doctor)."""
        return (len(self.names) + self.addrs.itemsize * len(self.addrs)
                + self.sizes.itemsize * len(self.sizes) + self.name_at.itemsize * len(self.name_at))

    @classmethod
    def from_buffer(cls, buf: Any, debug_file: Callable[[str], str | None] | None = None) -> ElfSymbols:
        """Parse an ELF image held in memory (an mmap or bytes); raises ValueError."""
        try:
            return cls._from_elf(_Elf(buf), debug_file)
        except struct.error as exc:
            raise ValueError(f"malformed ELF file: {exc}") from None

    @classmethod
    def _from_elf(cls, elf: _Elf, debug_file: Callable[[str], str | None] | None) -> ElfSymbols:
        tables = {s.type: s for s in reversed(elf.sections) if s.type in (_SHT_SYMTAB, _SHT_DYNSYM)}
        functions = _Functions()
        symtab = tables.get(_SHT_SYMTAB)
        if symtab is not None:
            elf.functions(symtab, functions)
        dynsym = tables.get(_SHT_DYNSYM)
        if not functions and dynsym is not None:
            elf.functions(dynsym, functions)
        build_id = elf.build_id()
        if symtab is None or not functions:
            _extra_functions(elf, build_id, debug_file, functions)
        elf.plt_functions(functions)
        return cls(elf.loads, functions, build_id)

    @classmethod
    def from_path(cls, path: str, debug_file: Callable[[str], str | None] | None = None) -> ElfSymbols:
        """Parse the ELF file at `path`; raises OSError or ValueError.

        The file is mmap'ed only while its tables are read: the page cache
        holds it, this process copies just the function names it keeps.
        """
        with _mapped(path) as buf:
            return cls.from_buffer(buf, debug_file)

    def vaddr(self, file_offset: int) -> int | None:
        """The ELF virtual address of a file offset, through the PT_LOAD headers.

        What makes PIE executables and shared libraries (and non-PIE ones)
        come out right whatever address they were loaded at.
        """
        best = None
        for p_offset, p_vaddr, p_filesz in self.loads:
            if p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
            if p_offset <= file_offset:
                best = file_offset - p_offset + p_vaddr
        return best if best is not None else (file_offset if not self.loads else None)

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(function name, offset into it) for an ELF virtual address, or None."""
        i = bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        start, size = self.addrs[i], self.sizes[i]
        # Sizeless symbols (hand-written assembly) reach to the next symbol.
        if size and vaddr >= start + size:
            return None
        name = self.names[self.name_at[i]: self.name_at[i + 1]].decode("utf-8", "replace")
        return name, vaddr - start


class _mapped:
    """A read-only mmap of a whole file, unmapped on exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.map: Any = None

    def __enter__(self) -> Any:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise ValueError("empty file")
            self.map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        return self.map

    def __exit__(self, *exc: object) -> None:
        try:
            self.map.close()
        except BufferError:  # a view still alive after an error: the GC unmaps it
            pass


def _extra_functions(elf: _Elf, build_id: str | None, debug_file: Callable[[str], str | None] | None,
                     into: _Functions) -> None:
    """Functions a stripped binary's .dynsym lacks: a build-id debug file, or MiniDebugInfo."""
    if build_id and debug_file is not None:
        path = debug_file(build_id)
        if path is not None:
            try:
                with _mapped(path) as buf:
                    debug = _Elf(buf)
                    symtab = next((s for s in debug.sections if s.type == _SHT_SYMTAB), None)
                    if symtab is not None:
                        debug.functions(symtab, into)
                        return
            except (OSError, ValueError, struct.error):
                pass
    section = elf.section(".gnu_debugdata")
    if section is not None:
        # Fedora's MiniDebugInfo: an xz-compressed ELF holding a .symtab of
        # the functions .dynsym leaves out.
        try:
            import lzma
        except ImportError:  # a Python built without xz support
            return
        try:
            mini = _Elf(lzma.decompress(elf.section_bytes(section)))
            symtab = next((s for s in mini.sections if s.type == _SHT_SYMTAB), None)
            if symtab is not None:
                mini.functions(symtab, into)
        except (ValueError, lzma.LZMAError, struct.error):
            pass


# ---- kernel -------------------------------------------------------------------------

# kallsyms has no sizes: a symbol ends where the next one starts, except the
# last one of the core kernel or of a module (the next one lives elsewhere).
# Those get this much room; beyond it an address is unknown.
_KERNEL_OPEN_END_BYTES = 4096


class KernelSymbols:
    """Kernel text symbols from /proc/kallsyms, parsed once on first use.

    Args:
        path: The kallsyms file (a fake one in tests).

    With kernel.kptr_restrict in force (or without CAP_SYSLOG) every address
    in kallsyms reads as zero: `available` is then False, `unavailable_reason`
    says why and what to do, and every name is "[unknown]".

    About 120k symbols take ~2 MB here (an address array, and their names
    zlib-compressed NAMES_PER_BLOCK at a time: 2.9 MB of names become ~0.7
    MB) instead of ~15 MB as Python ints and strs. A lookup decompresses one
    block (~20 us); the last few are kept, and callers cache names per stack.
    """

    def __init__(self, path: str = f"{PROC}/kallsyms") -> None:
        self.path = path
        self._addrs = array("Q")
        # names of symbols i * NAMES_PER_BLOCK.. in blob[block_at[i]:block_at[i + 1]]
        self._block_at = array("I", [0])
        self._blob = b""
        self._blocks: dict[int, list[bytes]] = {}
        self._open_ended: frozenset[int] = frozenset()
        self._loaded_at: float | None = None
        self._reason: str | None = None
        self.misses = 0
        """Addresses resolved to [unknown] since the last (re)load."""

    @property
    def available(self) -> bool:
        """Whether kernel addresses can be named at all (loads kallsyms)."""
        self._ensure()
        return self._reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """Why kernel symbols are unavailable, with the remedy; None when they are."""
        self._ensure()
        return self._reason

    def __len__(self) -> int:
        self._ensure()
        return len(self._addrs)

    def _ensure(self) -> None:
        if self._loaded_at is None:
            self.reload()

    def reload(self) -> None:
        """Parse kallsyms now (modules and BPF programs come and go)."""
        self._loaded_at = time.monotonic()
        self.misses = 0
        self._addrs, self._block_at, self._blob = array("Q"), array("I", [0]), b""
        self._blocks = {}
        self._open_ended = frozenset()
        # Parsing 120k lines leaves ~10 MB of allocator slack behind; a child
        # does it and hands over only the finished table. In process when the
        # child cannot run (it says nothing about the file: that is read here).
        table = run_module("probes.symbolize", "kallsyms-table", self.path)
        if table is not None:
            parsed = _table_from_bytes(table)
        else:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                self._reason = f"cannot read {self.path}: {exc.strerror}"
                return
            try:
                with os.fdopen(fd, "rb", buffering=1 << 20) as lines:
                    parsed = _table_from_bytes(_table_to_bytes(_parse_kallsyms(lines)))
            except OSError as exc:
                self._reason = f"cannot read {self.path}: {exc.strerror}"
                return
        addrs, block_at, blob, open_ended = parsed
        self._reason = None
        if not addrs:
            self._reason = f"no kernel text symbols in {self.path}"
        elif addrs[-1] == 0:
            # Sorted, so the last address is the largest: all are zero, which
            # is how the kernel hides them (kptr_restrict, or no CAP_SYSLOG).
            self._reason = _hidden_reason()
        else:
            self._addrs, self._block_at, self._blob = addrs, block_at, blob
            self._open_ended = open_ended

    def reload_if_missed(self, min_interval_s: float = 60.0) -> bool:
        """Reload when addresses were missed and the last load is old enough."""
        if self._loaded_at is None or not self.misses or self._reason is not None:
            return False
        if time.monotonic() - self._loaded_at < min_interval_s:
            return False
        self.reload()
        return True

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(symbol name, offset into it) for a kernel address, or None."""
        self._ensure()
        i = bisect_right(self._addrs, addr) - 1
        if i < 0 or (i in self._open_ended and addr - self._addrs[i] >= _KERNEL_OPEN_END_BYTES):
            self.misses += 1
            return None
        block, at = divmod(i, NAMES_PER_BLOCK)
        names = self._blocks.get(block)
        if names is None:
            if len(self._blocks) >= BLOCKS_KEPT:
                self._blocks.pop(next(iter(self._blocks)))
            names = self._blocks[block] = zlib.decompress(
                self._blob[self._block_at[block] : self._block_at[block + 1]]
            ).split(b"\n")
        return names[at].decode("utf-8", "replace"), addr - self._addrs[i]

    def name(self, addr: int) -> str:
        """The function containing a kernel address ("do_nanosleep"), or "[unknown]"."""
        found = self.lookup(addr)
        return found[0] if found else UNKNOWN

    def name_offset(self, addr: int) -> str:
        """Like `name`, with the offset: "do_nanosleep+0x1f"."""
        found = self.lookup(addr)
        return f"{found[0]}+0x{found[1]:x}" if found else UNKNOWN


def _hidden_reason() -> str:
    """Why kallsyms shows zeros, as the kernel decides (kallsyms_show_value)."""
    restrict = _read_text(f"{PROC}/sys/kernel/kptr_restrict").strip() or "?"
    paranoid = _read_text(f"{PROC}/sys/kernel/perf_event_paranoid").strip() or "?"
    if restrict not in ("0", "1", "?"):
        return (f"kernel addresses are hidden from everyone, root included (kernel.kptr_restrict={restrict}): "
                "`sysctl kernel.kptr_restrict=1` and run orac as root")
    return (f"kernel addresses are hidden from this user (kernel.kptr_restrict={restrict}, "
            f"kernel.perf_event_paranoid={paranoid}): run orac as root (it needs CAP_SYSLOG)")


_TEXT_TYPES = frozenset((b"t", b"T", b"w", b"W"))
# Kernel symbol names compressed together; decompressed blocks kept.
NAMES_PER_BLOCK = 64
BLOCKS_KEPT = 16


def _parse_kallsyms(lines: Iterable[bytes]) -> tuple[array, array, bytes, frozenset[int]]:
    """Text symbols of kallsyms lines: (addresses, name offsets, names blob, open-ended indexes).

    Sorted by address; of aliases at one address the preferred one is kept
    (global over local, then fewer leading underscores). Streams the lines
    into arrays: about 20 MB less at the peak than a list of tuples.
    Weak symbols (w/W) are kept: without CONFIG_KALLSYMS_ALL they are
    functions (`__weak` defaults), and with it a data symbol never lies
    between two functions.
    """
    addrs, ranks, modules = array("Q"), array("H"), array("H")
    # Names in file order, in one buffer: no small object per symbol.
    names, names_at = bytearray(), array("I", [0])
    module_ids: dict[bytes, int] = {b"": 0}
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[1] not in _TEXT_TYPES:
            continue
        try:
            addrs.append(int(parts[0], 16))
        except ValueError:
            continue
        name = parts[2]
        underscores = min(len(name) - len(name.lstrip(b"_")), 99)
        ranks.append((parts[1] in (b"t", b"w")) * 100 + underscores)
        module = parts[3] if len(parts) > 3 else b""
        modules.append(module_ids.setdefault(module, len(module_ids)))
        names += name
        names_at.append(len(names))
    # kallsyms is nearly sorted (modules and BPF programs are not): sort a
    # permutation by one int key per symbol.
    order = sorted(range(len(addrs)), key=lambda i: (addrs[i] << 16) | ranks[i])
    out_addrs, name_at, blob, open_ended = array("Q"), array("I", [0]), bytearray(), []
    last_module = -1
    for i in order:
        addr = addrs[i]
        if out_addrs and out_addrs[-1] == addr:
            continue  # an alias, less preferred
        if modules[i] != last_module and out_addrs:
            # The previous symbol was the last of its module: its end is unknown.
            open_ended.append(len(out_addrs) - 1)
        last_module = modules[i]
        out_addrs.append(addr)
        blob += names[names_at[i]:names_at[i + 1]]
        name_at.append(len(blob))
    if out_addrs:
        open_ended.append(len(out_addrs) - 1)
    del order, names
    return out_addrs, name_at, bytes(blob), frozenset(open_ended)


_TABLE_HEADER = struct.Struct("=IIII")  # addresses, block offsets, compressed bytes, open-ended


def _table_to_bytes(parsed: tuple[array, array, bytes, frozenset[int]]) -> bytes:
    """A parsed table with its names compressed in blocks, as the child hands it over."""
    addrs, name_at, names, open_ended = parsed
    block_at, blob = array("I", [0]), bytearray()
    for first in range(0, len(addrs), NAMES_PER_BLOCK):
        last = min(first + NAMES_PER_BLOCK, len(addrs))
        blob += zlib.compress(b"\n".join(names[name_at[i] : name_at[i + 1]] for i in range(first, last)))
        block_at.append(len(blob))
    ends = array("I", sorted(open_ended))
    header = _TABLE_HEADER.pack(len(addrs), len(block_at), len(blob), len(ends))
    return header + addrs.tobytes() + block_at.tobytes() + blob + ends.tobytes()


def _table_from_bytes(data: bytes) -> tuple[array, array, bytes, frozenset[int]]:
    """(addresses, block offsets, compressed names, open-ended indexes) of a table."""
    n_addrs, n_block_at, n_blob, n_ends = _TABLE_HEADER.unpack_from(data)
    at = _TABLE_HEADER.size
    addrs, block_at, ends = array("Q"), array("I"), array("I")
    addrs.frombytes(data[at : at + n_addrs * 8])
    at += n_addrs * 8
    block_at.frombytes(data[at : at + n_block_at * 4])
    at += n_block_at * 4
    blob = data[at : at + n_blob]
    at += n_blob
    ends.frombytes(data[at : at + n_ends * 4])
    return addrs, block_at, blob, frozenset(ends)


def _write_kallsyms_table(path: str) -> int:
    """The child's side: parse `path` and write the table to stdout."""
    try:
        with open(path, "rb", buffering=1 << 20) as lines:
            table = _table_to_bytes(_parse_kallsyms(lines))
    except OSError:
        return 1
    sys.stdout.buffer.write(table)
    return 0


# ---- user space ---------------------------------------------------------------------


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

    __slots__ = ("path", "signature", "starts", "sizes", "name_at", "names", "checked_tick")

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

    __slots__ = ("pid", "identity", "maps", "starts", "names", "checked_tick", "refreshed_tick",
                 "used_tick", "perf_map")

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


# ---- both -------------------------------------------------------------------------


class Symbolizer:
    """Names for whole stacks: kernel frames and user frames of one process.

    Args:
        kernel: Kernel symbols; a new KernelSymbols by default.
        user: User symbols; a new UserSymbols by default.
        kernel_reload_interval_s: Reparse kallsyms at most this often, and
            only after addresses were missed (new modules, BPF programs).
    """

    def __init__(self, kernel: KernelSymbols | None = None, user: UserSymbols | None = None,
                 kernel_reload_interval_s: float = 60.0) -> None:
        self.kernel = kernel if kernel is not None else KernelSymbols()
        self.user = user if user is not None else UserSymbols()
        self.kernel_reload_interval_s = kernel_reload_interval_s

    def stack(self, pid: int, kernel_addrs: Sequence[int] = (), user_addrs: Sequence[int] = (),
              *, kernel_suffix: str = "") -> tuple[str, ...]:
        """One stack's frames, root first: user frames, then kernel frames.

        Args:
            pid: The process (tgid) the user addresses belong to.
            kernel_addrs: Kernel addresses as a stack map holds them: leaf
                first; the first 0 ends the stack.
            user_addrs: User addresses, the same way.
            kernel_suffix: Appended to kernel frames ("_[k]" is what
                flamegraph.pl's colour palettes recognise).

        Root first is the order of folded stacks ("main;foo;do_nanosleep")
        and of a flame graph's bottom-up; one name per address, so the last
        `len(kernel frames)` names are the kernel's. Every frame after a
        stack's first is a return address and is looked up one byte earlier.
        """
        user = _trim(user_addrs)
        kernel = _trim(kernel_addrs)
        names = self.user.resolve(pid, user, return_addresses=True) if user and pid > 0 else [UNKNOWN] * len(user)
        names.reverse()
        knames = [self.kernel.name(addr - 1 if i else addr) + kernel_suffix for i, addr in enumerate(kernel)]
        knames.reverse()
        return tuple(names + knames)

    def tick(self) -> None:
        """Call once per sample: ages the caches, rereads kallsyms after misses."""
        self.user.tick()
        self.kernel.reload_if_missed(self.kernel_reload_interval_s)


def _trim(addrs: Sequence[int]) -> list[int]:
    out = []
    for addr in addrs:
        if not addr:
            break
        out.append(addr)
    return out


def folded(frames: Iterable[str]) -> str:
    """Frames (root first) as one folded-stack line for flamegraph.pl, without the count.

    A ";" inside a name would split the frame, so it becomes ":".
    """
    return ";".join(frame.replace(";", ":") for frame in frames)


if __name__ == "__main__":
    # `python -m probes.symbolize kallsyms-table PATH`, run by KernelSymbols.reload.
    if len(sys.argv) == 3 and sys.argv[1] == "kallsyms-table":
        sys.exit(_write_kallsyms_table(sys.argv[2]))
    sys.exit("usage: python -m probes.symbolize kallsyms-table PATH")
