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

from collections.abc import Iterable, Sequence

from probes.symbols.elf import UNKNOWN
from probes.symbols.kallsyms import KernelSymbols
from probes.symbols.user import UserSymbols


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


# Where every thread's user stack begins: glibc's and musl's process and
# thread entry points, and Go's (whose runtime keeps frame pointers).
THREAD_STARTS = frozenset({
    "_start", "__libc_start_main", "__libc_start_main_impl", "__libc_start_call_main", "libc_start_main_stage2",
    "start_thread", "clone", "clone3", "__clone", "__clone3", "thread_start",
    "runtime.goexit", "runtime.rt0_go", "runtime.mstart",
})


def cut_short(user_frames: Sequence[str]) -> bool:
    """True for a user stack (root first) that does not begin where threads begin (THREAD_STARTS).

    Walking by frame pointers through code built without them (Debian's own
    binaries, CPython) ends early, at a frame with no name ([unknown],
    python3.11+0x5a85ed) or at a named one mid-stack; either way its true
    callers are lost. Measured on these machines: a program built with frame
    pointers begins at __libc_start_call_main or start_thread in every
    sample; the system python3.11 in none (its roots: [unknown] in 72 %,
    python3.11+0x... or _PyEval_EvalFrameDefault in the rest).
    """
    return bool(user_frames) and user_frames[0] not in THREAD_STARTS


def folded(frames: Iterable[str]) -> str:
    """Frames (root first) as one folded-stack line for flamegraph.pl, without the count.

    A ";" inside a name would split the frame, so it becomes ":".
    """
    return ";".join(frame.replace(";", ":") for frame in frames)

