"""ELF files to function names: symtab and dynsym through PT_LOAD, PLT stubs, build ids and separate debug files."""

from __future__ import annotations

import mmap
import os
import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

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

    __slots__ = ("addrs", "ends", "names", "ranks", "sizes")

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
            for entry in range(0, len(code) - 5, step):
                jmp = code.find(b"\xff\x25", entry, entry + 8)
                if jmp < 0 or jmp + 6 > len(code):
                    continue
                (disp,) = struct.unpack_from("<i", code, jmp + 2)
                target = slots.get(sec.addr + jmp + 6 + disp)
                if target is not None:
                    functions.add(sec.addr + entry, 500, step, target + b"@plt")


class ElfSymbols:
    """The function symbols of one ELF file, and how its file offsets map to addresses.

    Built once per binary (`from_path` / `from_buffer`), then only looked up.
    `error` says why a file gave no symbols (unreadable, not ELF); lookups
    then fall back to module+offset.
    """

    __slots__ = ("addrs", "build_id", "error", "loads", "name_at", "names", "sizes", "used_tick")

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


def data_symbols(path: str, names: Iterable[str]) -> tuple[dict[str, int], ElfSymbols]:
    """The ELF virtual addresses of named symbols of any kind (variables too), and the file's loads.

    For reading a process's globals from its memory: the loads turn an
    address into the running one (`ElfSymbols.vaddr` of a mapping's file
    offset). Names that neither .symtab nor .dynsym defines are left out;
    raises OSError or ValueError as from_path does.
    """
    wanted = {name.encode(): name for name in names}
    found: dict[str, int] = {}
    with _mapped(path) as buf:
        try:
            elf = _Elf(buf)
            for section in elf.sections:
                if section.type not in (_SHT_SYMTAB, _SHT_DYNSYM) or not 0 <= section.link < len(elf.sections):
                    continue
                strtab = elf.sections[section.link]
                end = strtab.offset + strtab.size
                for name_off, _info, shndx, value, _size in elf.symbols(section):
                    if shndx == _SHN_UNDEF or not value:
                        continue
                    name = wanted.get(elf._cbytes(strtab.offset + name_off, end))
                    if name is not None:
                        found.setdefault(name, value)
                if len(found) == len(wanted):
                    break
        except struct.error as exc:
            raise ValueError(f"malformed ELF file: {exc}") from None
        return found, ElfSymbols(elf.loads)


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
