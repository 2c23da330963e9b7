"""probes.symbols: kernel and user addresses to names, against real binaries.

The user-space tests build tests/support/workloads/symbol_target.c with gcc (PIE,
non-PIE, stripped, stripped with a build-id debug file), start it, and
resolve the addresses it prints. They need gcc and binutils, not root,
except where a test says so (map_files, kallsyms addresses).
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import WORKLOADS, cannot_run

from probes.symbols.elf import ANON, UNKNOWN, ElfSymbols
from probes.symbols.kallsyms import KernelSymbols
from probes.symbols.symbolizer import Symbolizer, folded
from probes.symbols.user import UserSymbols

HELPER_SOURCE = WORKLOADS / "symbol_target.c"
LIBC_ALIASES = {"getppid", "__getppid"}
IS_ROOT = os.geteuid() == 0


# ---- the helper process ---------------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        cannot_run(f"{name} is needed to build the test binaries (apt-get install gcc binutils)")
    return path


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The helper built four ways, plus a debug directory for the last."""
    gcc, strip, objcopy = tool("gcc"), tool("strip"), tool("objcopy")
    out = tmp_path_factory.mktemp("symbol_target")
    # -fno-toplevel-reorder: functions in source order (see SWAP_ORDER).
    flags = ["-O1", "-fno-omit-frame-pointer", "-fno-toplevel-reorder", "-Wl,--build-id"]

    def build(name: str, *extra: str) -> Path:
        binary = out / name
        subprocess.run([gcc, *flags, *extra, "-o", str(binary), str(HELPER_SOURCE), "-ldl"], check=True)
        return binary

    built = {"pie": build("symbol_target-pie"), "nopie": build("symbol_target-nopie", "-no-pie")}
    # The same at fixed addresses, its two functions swapped.
    built["nopie_swapped"] = build("symbol_target-nopie-swapped", "-no-pie", "-DSWAP_ORDER")
    # Stripped, its functions exported: only .dynsym names them.
    built["stripped"] = build("symbol_target-stripped", "-rdynamic")
    subprocess.run([strip, "--strip-all", str(built["stripped"])], check=True)
    # Stripped without exports, its symbols in a build-id debug file, the
    # way distributions ship -dbgsym packages.
    debug = build("symbol_target-debug")
    debug_file = out / "symbol_target.debug"
    subprocess.run([objcopy, "--only-keep-debug", str(debug), str(debug_file)], check=True)
    subprocess.run([strip, "--strip-all", str(debug)], check=True)
    build_id = ElfSymbols.from_path(str(debug)).build_id
    assert build_id, "gcc did not write a build-id"
    target = out / "debug" / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    debug_file.rename(target)
    built["debug"] = debug
    built["debug_dir"] = out / "debug"
    return built


@dataclass
class Target:
    proc: subprocess.Popen
    addrs: dict[str, int]
    binary: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def mappings(self) -> list[tuple[int, int, str, str]]:
        """(start, end, perms, path) of each mapping."""
        out = []
        for line in Path(f"/proc/{self.pid}/maps").read_text().splitlines():
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[1], parts[5] if len(parts) > 5 else ""))
        return out


def start_target(binary: Path) -> Target:
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return Target(proc, read_addresses(proc), binary)


def read_addresses(proc: subprocess.Popen) -> dict[str, int]:
    addrs = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            return addrs
        name, value = line.split()
        addrs[name] = int(value, 16)
    pytest.fail(f"the helper exited with {proc.wait()} before it was ready")


def stop_target(target: Target) -> None:
    assert target.proc.stdin is not None
    target.proc.stdin.close()
    target.proc.wait(timeout=10)


@pytest.fixture
def run_target() -> Iterator:
    started: list[Target] = []

    def run(binary: Path) -> Target:
        target = start_target(binary)
        started.append(target)
        return target

    yield run
    for target in started:
        stop_target(target)


# ---- user space -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["pie", "nopie", "stripped"])
def test_user_functions_resolve(variant: str, binaries: dict[str, Path], run_target) -> None:
    target = run_target(binaries[variant])
    a = target.addrs
    user = UserSymbols()
    names = user.resolve(target.pid, [a["burn_cpu"], a["burn_cpu"] + 5, a["sleep_here"], a["sleep_here"] + 5])
    assert names == ["burn_cpu", "burn_cpu", "sleep_here", "sleep_here"]
    assert user.resolve(target.pid, [a["getppid"], a["getppid"] + 1])[0] in LIBC_ALIASES
    assert user.resolve(target.pid, [a["burn_cpu"] + 5], offsets=True) == ["burn_cpu+0x5"]
    # Warm: same answers from the caches.
    assert user.resolve(target.pid, [a["sleep_here"] + 5]) == ["sleep_here"]
    assert user.binaries_loaded == 2  # the helper and libc, each once


def test_stripped_binary_really_has_only_dynsym(binaries: dict[str, Path]) -> None:
    readelf = tool("readelf")
    sections = subprocess.run([readelf, "-SW", str(binaries["stripped"])], capture_output=True,
                              text=True, check=True).stdout
    assert ".dynsym" in sections and ".symtab" not in sections


def test_build_id_debug_file_names_a_stripped_binary(binaries: dict[str, Path], run_target) -> None:
    target = run_target(binaries["debug"])
    a = target.addrs
    # Without the debug file the stripped binary names nothing of its own.
    bare = UserSymbols(debug_dir=str(binaries["debug_dir"] / "nowhere"))
    assert not bare.resolve(target.pid, [a["burn_cpu"]])[0].startswith("burn_cpu")
    user = UserSymbols(debug_dir=str(binaries["debug_dir"]))
    assert user.resolve(target.pid, [a["burn_cpu"] + 5, a["sleep_here"]]) == ["burn_cpu", "sleep_here"]


def test_unnamed_code_is_module_plus_offset(binaries: dict[str, Path], run_target) -> None:
    # _start is only in .symtab: stripped (and not exported), the entry point
    # has no name, and the frame says where it is instead: the ELF address,
    # as addr2line takes it.
    binary = binaries["debug"]
    target = run_target(binary)
    (entry,) = struct.unpack_from("<Q", binary.read_bytes(), 24)
    base = min(start for start, _end, _perms, path in target.mappings() if path == str(binary))
    user = UserSymbols(debug_dir=str(binaries["debug_dir"] / "nowhere"))
    assert user.resolve(target.pid, [base + entry]) == [f"{binary.name}+0x{entry:x}"]
    assert user.resolve(target.pid, [base + entry], offsets=True) == [f"{binary.name}+0x{entry:x}"]
    # With the debug file it is named.
    named = UserSymbols(debug_dir=str(binaries["debug_dir"]))
    assert named.resolve(target.pid, [base + entry + 1], offsets=True) == ["_start+0x1"]


def test_unmapped_and_exited(binaries: dict[str, Path]) -> None:
    target = start_target(binaries["pie"])
    user = UserSymbols()
    try:
        assert user.resolve(target.pid, [0x10, target.addrs["burn_cpu"]]) == [UNKNOWN, "burn_cpu"]
        # A garbage frame is not cached: the next tick looks at the maps again.
        assert 0x10 not in user._processes[target.pid].names
    finally:
        stop_target(target)
    user.tick()
    # Exited: what was cached still names its frames; nothing new is read.
    assert user.resolve(target.pid, [target.addrs["burn_cpu"], target.addrs["sleep_here"]]) == [
        "burn_cpu", "sleep_here"]
    assert user.gone_processes == 1
    # Never seen and gone: unknown.
    assert UserSymbols().resolve(target.pid, [target.addrs["burn_cpu"]]) == [UNKNOWN]


@pytest.mark.skipif(not IS_ROOT, reason="/proc/PID/map_files needs CAP_SYS_ADMIN")
def test_deleted_binary_read_through_map_files(binaries: dict[str, Path], tmp_path: Path, run_target) -> None:
    copy = tmp_path / "deleted_target"
    shutil.copy2(binaries["pie"], copy)
    target = run_target(copy)
    copy.unlink()
    assert any(path.endswith(" (deleted)") for *_, path in target.mappings())
    names = UserSymbols().resolve(target.pid, [target.addrs["burn_cpu"], target.addrs["sleep_here"] + 5])
    assert names == ["burn_cpu", "sleep_here"]


def test_new_library_found_at_the_next_tick(tmp_path: Path) -> None:
    gcc = tool("gcc")
    source = tmp_path / "late.c"
    source.write_text("__attribute__((noinline)) int late_function(int x) { return x * 3 + 1; }\n")
    library = tmp_path / "liblate.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    user = UserSymbols()
    pid = os.getpid()
    assert user.resolve(pid, [0x10]) == [UNKNOWN]  # reads the maps
    late = ctypes.CDLL(str(library))
    addr = ctypes.cast(late.late_function, ctypes.c_void_p).value
    assert addr
    # The maps were read this tick already: at most once per tick.
    assert user.resolve(pid, [addr]) == [UNKNOWN]
    user.tick()
    assert user.resolve(pid, [addr + 1]) == ["late_function"]


def test_exec_starts_afresh(binaries: dict[str, Path], run_target) -> None:
    # Non-PIE: the swapped build's addresses are fixed, and name other
    # functions (or none) in the first build.
    swapped = run_target(binaries["nopie_swapped"]).addrs
    target = run_target(binaries["nopie"])
    user = UserSymbols()
    wanted = [swapped["burn_cpu"], swapped["sleep_here"]]
    before = user.resolve(target.pid, wanted)
    assert before != ["burn_cpu", "sleep_here"]
    assert target.proc.stdin is not None
    target.proc.stdin.write(f"exec {binaries['nopie_swapped']}\n")
    target.proc.stdin.flush()
    assert read_addresses(target.proc)["burn_cpu"] == swapped["burn_cpu"]
    user.tick()  # the once-per-tick check sees another executable
    assert user.resolve(target.pid, wanted) == ["burn_cpu", "sleep_here"]


def test_perf_map_names_jit_code(binaries: dict[str, Path], tmp_path: Path, run_target) -> None:
    target = run_target(binaries["pie"])
    anon = target.addrs["anon"]
    perf_map = tmp_path / f"perf-{target.pid}.map"
    perf_map.write_text(f"{anon + 0x10:x} 20 py::work:/srv/app.py\n{anon + 0x100:x} 8 LazyCompile:~f /x.js:1\n")
    user = UserSymbols(perf_map_dir=str(tmp_path))
    assert user.resolve(target.pid, [anon + 0x18, anon + 0x100, anon + 0x40]) == [
        "py::work:/srv/app.py", "LazyCompile:~f /x.js:1", ANON]
    # JITs append as they compile; a miss is looked up again at the next tick.
    with perf_map.open("a") as f:
        f.write(f"{anon + 0x40:x} 10 py::late:/srv/app.py\n")
    user.tick()
    assert user.resolve(target.pid, [anon + 0x40]) == ["py::late:/srv/app.py"]
    # No perf map at all: the anonymous mapping is named as such.
    assert UserSymbols(perf_map_dir=str(tmp_path / "none")).resolve(target.pid, [anon]) == [ANON]


def test_vdso_functions(binaries: dict[str, Path], run_target) -> None:
    from probes.symbols.user import _own_vdso

    _, vdso = _own_vdso()
    if vdso is None:
        pytest.skip("no vdso in this process")
    target = run_target(binaries["pie"])
    start = next(s for s, _e, _p, path in target.mappings() if path == "[vdso]")
    found = {vdso.lookup(vdso.addrs[i])[0]: vdso.addrs[i] for i in range(len(vdso))}
    assert "clock_gettime" in found
    names = UserSymbols().resolve(target.pid, [start + found["clock_gettime"] + 4])
    assert names == ["clock_gettime"]


def test_plt_stubs_named_as_objdump_names_them(binaries: dict[str, Path]) -> None:
    objdump = tool("objdump")
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6") if os.path.exists(p)),
                None)
    files = [str(binaries["nopie"]), str(binaries["pie"])] + ([libc] if libc else [])
    checked = 0
    for path in files:
        listing = subprocess.run([objdump, "-d", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got", path],
                                 capture_output=True, text=True).stdout
        table = ElfSymbols.from_path(path)
        for addr, name in re.findall(r"^([0-9a-f]+) <([^>+]+@plt)>:", listing, re.M):
            if name.startswith("*ABS*"):
                continue  # an ifunc slot: named after its resolver here, by address there
            assert table.lookup(int(addr, 16) + 4) == (name, 4), (path, addr, name)
            checked += 1
    assert checked >= 3


def test_malformed_elf_is_a_value_error(tmp_path: Path) -> None:
    data = Path("/proc/self/exe").read_bytes()  # whatever python is
    assert len(ElfSymbols.from_buffer(data)) > 0
    for broken in (b"", b"\x7fELF", b"not an elf at all" * 10, data[: len(data) // 2], data[:64],
                   data[:4] + b"\x05" + data[5:]):
        with pytest.raises(ValueError):
            ElfSymbols.from_buffer(broken)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 4096)
    with pytest.raises(ValueError):
        ElfSymbols.from_path(str(junk))


def test_non_elf_executable_mapping(tmp_path: Path) -> None:
    import mmap

    blob = tmp_path / "code.bin"
    blob.write_bytes(b"\xc3" * 8192)
    with blob.open("rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 8192, prot=mmap.PROT_READ | mmap.PROT_EXEC)
        except OSError:
            pytest.skip("cannot map a file executable here (noexec)")
    try:
        start = next(int(line.split("-")[0], 16) for line in Path("/proc/self/maps").read_text().splitlines()
                     if line.endswith(str(blob)))
        user = UserSymbols(perf_map_dir=str(tmp_path))
        assert user.resolve(os.getpid(), [start + 0x10]) == ["code.bin+0x10"]
        assert user.binary_errors == 1
    finally:
        mapped.close()


def test_caches_are_bounded_and_age(binaries: dict[str, Path], run_target) -> None:
    targets = [run_target(binaries["pie"]) for _ in range(3)]
    user = UserSymbols(max_processes=2, process_idle_ticks=2, binary_idle_ticks=3)
    for target in targets:
        assert user.resolve(target.pid, [target.addrs["burn_cpu"]]) == ["burn_cpu"]
    assert user.cached_processes == 2  # least recently used went
    assert user.cached_binaries == 1  # one inode, shared by all three
    for _ in range(4):
        user.tick()
    assert user.cached_processes == 0 and user.cached_binaries == 0


# ---- kernel -------------------------------------------------------------------------


def kallsyms_text_symbols() -> list[tuple[int, str, str]]:
    out = []
    for line in Path("/proc/kallsyms").read_text().splitlines():
        parts = line.split()
        if parts[1] in "tTwW":
            out.append((int(parts[0], 16), parts[1], parts[2]))
    return out


def test_kernel_round_trips() -> None:
    symbols = kallsyms_text_symbols()
    if not symbols or max(addr for addr, *_ in symbols) == 0:
        pytest.skip("kallsyms addresses are hidden (kptr_restrict): run as root")
    symbols.sort()
    addrs = [addr for addr, *_ in symbols]
    # Symbols alone at their address, with room before the next one.
    candidates = [
        (addr, name, addrs[i + 1])
        for i, (addr, kind, name) in enumerate(symbols[:-1])
        if kind == "T" and (i == 0 or addrs[i - 1] != addr) and addrs[i + 1] - addr > 16
    ]
    kernel = KernelSymbols()
    assert kernel.available and kernel.unavailable_reason is None
    for addr, name, nxt in random.Random(7).sample(candidates, 200):
        assert kernel.name(addr) == name
        assert kernel.name(addr + (nxt - addr) // 2) == name
        assert kernel.name(nxt - 1) == name
        assert kernel.name_offset(addr + 0x1) == f"{name}+0x1"
    wanted = {"do_nanosleep", "schedule", "vfs_read"}
    found = {name for _addr, _kind, name in symbols if name in wanted}
    assert found == wanted, "kallsyms lacks functions every kernel has: the test would check nothing"
    for addr, _kind, name in symbols:
        if name in wanted:
            assert kernel.name(addr + 1) == name


FAKE_KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000000 t __stext_alias
ffffffff81000010 T foo
ffffffff81000100 T bar
ffffffff81000200 D some_data
ffffffffc0001000 t mod_second\t[mymod]
ffffffffc0000000 t mod_first\t[mymod]
ffffffffc0004000 t bpf_prog_6deef7357e7b4530_probe\t[bpf]
"""


def test_kernel_fake_kallsyms(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    kernel = KernelSymbols(str(path))
    assert kernel.available
    assert kernel.name(0xFFFFFFFF81000005) == "_stext"  # global over local alias
    assert kernel.name(0xFFFFFFFF81000030) == "foo"
    assert kernel.name_offset(0xFFFFFFFF81000150) == "bar+0x50"  # data symbols are not functions
    assert kernel.name(0xFFFFFFFF80FFFFFF) == UNKNOWN
    # The last symbol of the core kernel or of a module has no known end.
    assert kernel.name(0xFFFFFFFF81000100 + 0x2000) == UNKNOWN
    assert kernel.name(0xFFFFFFFFC0000010) == "mod_first"  # unsorted input
    assert kernel.name(0xFFFFFFFFC0001F00) == "mod_second"
    assert kernel.name(0xFFFFFFFFC0002800) == UNKNOWN  # past mod_second, before the BPF program
    assert kernel.name(0xFFFFFFFFC0004004) == "bpf_prog_6deef7357e7b4530_probe"
    assert len(kernel) == 6


def test_kernel_names_from_many_compressed_blocks(tmp_path: Path) -> None:
    from probes.symbols.kallsyms import BLOCKS_KEPT, NAMES_PER_BLOCK

    count = NAMES_PER_BLOCK * (BLOCKS_KEPT + 3) + 5  # more blocks than are kept, the last one short
    path = tmp_path / "kallsyms"
    path.write_text("".join(f"{0xFFFFFFFF81000000 + 16 * i:016x} T fn_{i}\n" for i in range(count)))
    kernel = KernelSymbols(str(path))
    assert len(kernel) == count
    # every block, twice over in a different order: evicted blocks decompress again
    for i in [*range(0, count, 7), *range(count - 1, -1, -5)]:
        assert kernel.name_offset(0xFFFFFFFF81000000 + 16 * i + 3) == f"fn_{i}+0x3"


def test_kernel_addresses_hidden(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("".join(f"0000000000000000 {line.split(' ', 1)[1]}\n" for line in FAKE_KALLSYMS.splitlines()))
    kernel = KernelSymbols(str(path))
    assert not kernel.available
    assert "kptr_restrict" in (kernel.unavailable_reason or "")
    assert kernel.name(0xFFFFFFFF81000010) == UNKNOWN
    assert kernel.name_offset(0) == UNKNOWN
    missing = KernelSymbols(str(tmp_path / "nope"))
    assert not missing.available and "cannot read" in (missing.unavailable_reason or "")


def test_kernel_reload_after_misses(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    kernel = KernelSymbols(str(path))
    assert kernel.name(0xFFFFFFFFC0010004) == UNKNOWN  # a module loaded later
    path.write_text(FAKE_KALLSYMS + "ffffffffc0010000 t new_fn\t[newmod]\n")
    assert not kernel.reload_if_missed(min_interval_s=3600)
    assert kernel.reload_if_missed(min_interval_s=0)
    assert kernel.name(0xFFFFFFFFC0010004) == "new_fn"


# ---- both -------------------------------------------------------------------------


def test_stack_is_root_first(binaries: dict[str, Path], tmp_path: Path, run_target) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    target = run_target(binaries["pie"])
    a = target.addrs
    symbolizer = Symbolizer(KernelSymbols(str(path)))
    # As a stack map holds them: leaf first, zero padded.
    kernel = [0xFFFFFFFF81000104, 0xFFFFFFFF81000100, 0, 0]  # bar, then a return address == bar's start
    user = [a["getppid"] + 2, a["sleep_here"] + 9, a["burn_cpu"] + 7, 0]
    frames = symbolizer.stack(target.pid, kernel, user)
    assert frames[0] == "burn_cpu" and frames[1] == "sleep_here" and frames[2] in LIBC_ALIASES
    # A return address at a function's first byte belongs to the caller before it.
    assert frames[3:] == ("foo", "bar")
    suffixed = symbolizer.stack(target.pid, kernel, user, kernel_suffix="_[k]")
    assert suffixed[3:] == ("foo_[k]", "bar_[k]")
    assert symbolizer.stack(target.pid, kernel, ()) == ("foo", "bar")
    assert symbolizer.stack(0, (), user) == (UNKNOWN,) * 3
    assert folded(["main", "a;b", "bar"]) == "main;a:b;bar"
    symbolizer.tick()


def test_timing_libc(binaries: dict[str, Path], run_target, capsys: pytest.CaptureFixture) -> None:
    """Prints, does not assert: speed targets belong in benchmarks/."""
    target = run_target(binaries["pie"])
    libc = [(s, e) for s, e, perms, path in target.mappings() if "x" in perms and "/libc" in path]
    assert libc, "libc not mapped executable"
    start, end = libc[0]
    addrs = random.Random(2).sample(range(start, end), 1000)

    user = UserSymbols()
    t0 = time.perf_counter()
    cold = user.resolve(target.pid, addrs)
    t1 = time.perf_counter()
    warm = user.resolve(target.pid, addrs)
    t2 = time.perf_counter()
    user._processes[target.pid].names.clear()  # tables loaded, names not cached
    user.resolve(target.pid, addrs)
    t3 = time.perf_counter()
    user.tick()  # a new tick: the per-tick check of the process, then cached names
    user.resolve(target.pid, addrs)
    t4 = time.perf_counter()
    assert cold == warm
    named = sum(not n.startswith(("libc.so", "[")) for n in cold)
    with capsys.disabled():
        print(f"\n[symbolize] 1000 random libc addresses ({named} named): cold {1e3 * (t1 - t0):.2f} ms, "
              f"warm {1e3 * (t2 - t1):.2f} ms, tables only {1e3 * (t3 - t2):.2f} ms, "
              f"next tick {1e3 * (t4 - t3):.2f} ms; tables {user.memory_bytes / 1024:.0f} KiB")


def test_kernel_table_built_in_process_when_the_child_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import probes.symbols.kallsyms

    monkeypatch.setattr(probes.symbols.kallsyms, "run_module", lambda *args: None)
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    kernel = KernelSymbols(str(path))
    assert kernel.name(0xFFFFFFFF81000030) == "foo" and len(kernel) == 6
