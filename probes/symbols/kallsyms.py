"""Kernel addresses to names, from /proc/kallsyms, parsed in a short-lived child and kept compressed."""

from __future__ import annotations

import os
import struct
import sys
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterable

from probes.host.aside import run_module
from probes.symbols.elf import PROC, UNKNOWN, _read_text

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
        table = run_module("probes.symbols.kallsyms", "kallsyms-table", self.path)
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


# Kernel symbols for every probe that names kernel frames (the drill-down's
# profile and off-CPU stacks): parsing kallsyms takes a child process, a
# quarter of a second of CPU and up to seconds on a loaded box, so it is done
# once, aside, as orac starts, not at a probe's first kernel stack.
_prepared: KernelSymbols | None = None


def prepare_kernel_symbols() -> None:
    """Parse kallsyms now, for every probe made later (off the collector and UI threads)."""
    global _prepared
    kernel = KernelSymbols()
    if kernel.available:
        _prepared = kernel


def prepared_kernel_symbols() -> KernelSymbols | None:
    """What prepare_kernel_symbols parsed, published whole (never one still loading); None before, or where hidden."""
    return _prepared


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


def _parse_kallsyms(lines: Iterable[bytes]) -> tuple[array[int], array[int], bytes, frozenset[int]]:
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


def _table_to_bytes(parsed: tuple[array[int], array[int], bytes, frozenset[int]]) -> bytes:
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


def _table_from_bytes(data: bytes) -> tuple[array[int], array[int], bytes, frozenset[int]]:
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


if __name__ == "__main__":
    # `python -m probes.symbols.kallsyms kallsyms-table PATH`, run by KernelSymbols.reload.
    if len(sys.argv) == 3 and sys.argv[1] == "kallsyms-table":
        sys.exit(_write_kallsyms_table(sys.argv[2]))
    sys.exit("usage: python -m probes.symbols.kallsyms kallsyms-table PATH")
