"""Loading out of process: orac's process holds descriptors only, never bcc.

The loader child (probes/ebpf/loader.py) compiles with bcc and hands over
the programs' attachments and maps; orac reads the maps through bpf(2)
(probes/ebpf/bpf.py). These tests check what that is for: no bcc and
little memory in orac's process, nothing on its terminal, programs gone
after stop, and errors that still say what went wrong.

Like tests/test_syscalls_probe.py, the real eBPF tests skip where eBPF
cannot run, except with ORAC_REQUIRE_EBPF=1.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.ebpf import unavailable

from probes.contract import ProbeUnavailable
from probes.ebpf import loader as ebpf_loader
from probes.ebpf import programs
from probes.ebpf.bpf import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_PERCPU_HASH,
    BPF_SYSCALL_NR,
    BpfMap,
    bpf,
    bpf_syscall_nr,
    create_map,
    link_prog_id,
)
from probes.ebpf.checks import BCC_INSTALL, check_ebpf
from probes.ebpf.programs import BpfProgram, first_error_line, load_program
from probes.ebpf.syscall_names import syscall_table
from probes.sources.syscalls import HIST_SLOTS, SyscallProbe, syscalls_program

REPO = Path(__file__).resolve().parent.parent
# orac's whole budget; a bare process with the probe running needs far less.
RSS_LIMIT_MIB = 60
UNAVAILABLE = "UNAVAILABLE: "

BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12


def require_ebpf() -> None:
    try:
        check_ebpf(tracefs=False)
    except ProbeUnavailable as exc:
        unavailable(str(exc))


# ---- pure ----------------------------------------------------------------------------


def test_bpf_syscall_number_matches_the_headers() -> None:
    assert BPF_SYSCALL_NR["x86_64"] == 321
    assert BPF_SYSCALL_NR["aarch64"] == 280
    table_nr = next((n for n, name in syscall_table().items() if name == "bpf"), None)
    if table_nr is not None:
        assert bpf_syscall_nr() == table_nr, platform.machine()


def test_first_error_line_skips_bccs_hint() -> None:
    verifier = (
        "bpf: Failed to load program: Permission denied\n6: (85) call bpf_map_lookup_elem#1\n"
        "7: (79) r0 = *(u64 *)(r0 +0)\nR0 invalid mem access 'map_value_or_null'\n"
        "processed 7 insns (limit 1000000) max_states_per_insn 0\n\n"
        "HINT: The 'map_value_or_null' error can happen if you dereference a pointer value from a map lookup\n\n"
        "Traceback (most recent call last):\n  File \"x\"\nException: Failed to load BPF program\n"
    )
    assert first_error_line(verifier, "x.bpf.c") == (
        "bpf: Failed to load program: Permission denied: R0 invalid mem access 'map_value_or_null'"
    )


def test_check_finds_bcc_without_importing_it() -> None:
    # In a fresh interpreter: this one may have imported bcc for another test.
    code = textwrap.dedent(
        """
        import sys
        from probes.contract import ProbeUnavailable
        from probes.ebpf.checks import check_ebpf
        try:
            check_ebpf(tracefs=False)
        except ProbeUnavailable as exc:
            print("unavailable:", exc)
        print("bcc imported:", "bcc" in sys.modules)
        """
    )
    out = run_python(code)
    assert "bcc imported: False" in out, out


def test_loader_message_parsing_closes_descriptors_it_cannot_use() -> None:
    r, w = os.pipe()
    with pytest.raises(ebpf_loader.LoadFailed, match="2 descriptors for 0 attachments, 0 maps and 0 programs"):
        ebpf_loader._parse(b'{"attachments": [], "maps": []}', [r, w], 0, "")
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_bcc_whose_library_does_not_load_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A bcc module found first on the path, failing as bcc does without libbcc.so:
    # only the loader child imports it, and its word comes back as the reason.
    fake = tmp_path / "bcc"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise OSError("libbcc.so.0: cannot open shared object file")\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(ProbeUnavailable) as exc:
        load_program(BpfProgram("x.bpf.c", "", ()))
    assert exc.value.reason == "bcc's library does not load: libbcc.so.0: cannot open shared object file"
    assert exc.value.remedy == BCC_INSTALL
    assert capfd.readouterr() == ("", "")


def test_a_loader_that_takes_too_long_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "LOAD_TIMEOUT_S", 0.01)
    with pytest.raises(ProbeUnavailable, match=r"^compiling x.bpf.c took over 0.01 s"):
        load_program(BpfProgram("x.bpf.c", "", ()))


# ---- bpf(2) through ctypes --------------------------------------------------------------


def make_map(map_type: int, key_size: int, value_size: int, entries: int) -> BpfMap:
    try:
        return BpfMap(create_map(map_type, key_size, value_size, entries, "orac_test"))
    except PermissionError as exc:
        unavailable(f"creating a BPF map: {exc}")


@pytest.mark.root
def test_map_operations_by_descriptor() -> None:
    m = make_map(BPF_MAP_TYPE_HASH, 4, 12, 16)
    try:
        assert (m.name, m.key_size, m.value_size, m.max_entries, m.per_cpu) == ("orac_test", 4, 12, 16, False)
        key = (7).to_bytes(4, "little")
        assert m.lookup(key) is None
        m.update(key, b"abcdefghijkl")
        assert m.lookup(key) == b"abcdefghijkl"
        assert list(m.keys()) == [key]
        assert m.next_key(key) is None
        assert m.delete(key) and not m.delete(key)
        with pytest.raises(ValueError):
            m.update(key, b"short")
        with pytest.raises(FileExistsError):
            m.update(key, b"x" * 12)
            m.update(key, b"y" * 12, flags=1)  # BPF_NOEXIST
    finally:
        m.close()


@pytest.mark.root
def test_per_cpu_values_are_padded_to_8_bytes_per_possible_cpu() -> None:
    m = make_map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2)
    try:
        assert m.per_cpu and m.value_size == 8 * m.cpus
        value = b"".join(i.to_bytes(4, "little") + b"\0" * 4 for i in range(m.cpus))
        m.update((1).to_bytes(4, "little"), value)
        assert m.lookup((1).to_bytes(4, "little")) == value
        assert m.lookup((0).to_bytes(4, "little")) == b"\0" * m.value_size  # an array's entries always exist
    finally:
        m.close()


@pytest.mark.root
def test_lookup_and_delete_batch_empties_a_map() -> None:
    m = make_map(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 256)
    try:
        for i in range(100):
            m.update(i.to_bytes(4, "little"), i.to_bytes(8, "little") * m.cpus)
        keys = ctypes.create_string_buffer(256 * 4)
        values = ctypes.create_string_buffer(256 * m.value_size)
        token_in, token_out = (ctypes.create_string_buffer(m.batch_token_size()) for _ in range(2))
        got, first = 0, True
        while True:
            n, err = m.lookup_batch(keys, values, 256, None if first else token_in, token_out, delete=True)
            got += n
            if err == errno.ENOENT:
                break
            if first and err in (errno.EINVAL, errno.EOPNOTSUPP, 524):
                pytest.skip("the kernel has no batch map operations")
            assert err == 0, os.strerror(err)
            ctypes.memmove(token_in, token_out, ctypes.sizeof(token_in))
            first = False
        assert got == 100
        assert list(m.keys()) == []
    finally:
        m.close()


# ---- the loader ---------------------------------------------------------------------------


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter of this venv, with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


PROBE_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import sys, time
    from probes.contract import ProbeUnavailable
    from probes.sources.syscalls import SyscallProbe

    probe = SyscallProbe()
    try:
        probe.start()
    except ProbeUnavailable as exc:
        print("UNAVAILABLE:", exc)
        sys.exit(0)
    probe.sample()
    time.sleep(0.3)
    probe.sample()
    rss_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    print("bcc modules:", sorted(name for name in sys.modules if name == "bcc" or name.startswith("bcc.")))
    print("rss_kib:", rss_kib)
    probe.stop()
    """
)


@pytest.fixture(scope="module")
def fresh_probe_output() -> str:
    out = run_python(PROBE_IN_A_FRESH_PROCESS)
    if out.startswith(UNAVAILABLE):
        unavailable(out[len(UNAVAILABLE) :].strip())
    return out


@pytest.mark.root
def test_started_probe_leaves_no_bcc_in_the_process(fresh_probe_output: str) -> None:
    assert "bcc modules: []" in fresh_probe_output, fresh_probe_output


@pytest.mark.root
def test_started_probe_keeps_the_process_small(fresh_probe_output: str) -> None:
    rss_kib = int(fresh_probe_output.split("rss_kib:")[1].split()[0])
    # Shown with -s: the figure, not only the verdict.
    print(f"RSS of a process running the syscalls probe: {rss_kib / 1024:.1f} MiB (limit {RSS_LIMIT_MIB} MiB)")
    assert rss_kib < RSS_LIMIT_MIB * 1024


def kernel_ids(command: int) -> set[int]:
    """Every BPF program (or map) id the kernel has now: BPF_{PROG,MAP}_GET_NEXT_ID."""

    class Attr(ctypes.Structure):
        _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]

    ids: set[int] = set()
    attr = Attr()
    while True:
        try:
            bpf(command, attr)
        except FileNotFoundError:
            return ids
        ids.add(attr.next_id)
        attr.start_id = attr.next_id


@pytest.mark.root
def test_stop_detaches_and_the_kernel_frees_programs_and_maps() -> None:
    require_ebpf()
    progs_before, maps_before = kernel_ids(BPF_PROG_GET_NEXT_ID), kernel_ids(BPF_MAP_GET_NEXT_ID)
    probe = SyscallProbe()
    try:
        probe.start()
    except ProbeUnavailable as exc:
        unavailable(str(exc))
    try:
        program = probe._bpf
        assert program is not None
        assert sorted(a.name for a in program.attachments) == ["sched_process_fork", "sys_enter", "sys_exit"]
        our_progs = {link_prog_id(a.fd) for a in program.attachments}
        our_maps = {m.info.id for m in program.maps.values()}
        progs_running = kernel_ids(BPF_PROG_GET_NEXT_ID)
        assert len(our_progs) == 3 and our_progs <= progs_running - progs_before
        # starts, stats, errnos, comms, thread_stats, generation, focus, lost, new_tasks, new_task_returns
        assert len(our_maps) == 10 and our_maps <= kernel_ids(BPF_MAP_GET_NEXT_ID) - maps_before
        # Descriptors close-on-exec: orac's other children must not hold the programs.
        assert not any(os.get_inheritable(fd) for fd in [a.fd for a in program.attachments])
        assert not any(os.get_inheritable(m.fd) for m in program.maps.values())
    finally:
        probe.stop()
    # The kernel frees them once the last descriptor is closed (just after, at times).
    deadline = time.monotonic() + 5
    while True:
        progs_after, maps_after = kernel_ids(BPF_PROG_GET_NEXT_ID), kernel_ids(BPF_MAP_GET_NEXT_ID)
        if not (our_progs & progs_after or our_maps & maps_after):
            break
        assert time.monotonic() < deadline, f"still loaded: {our_progs & progs_after} {our_maps & maps_after}"
        time.sleep(0.05)
    # Other processes may load and unload programs meanwhile: the count is
    # shown, ours are checked by id above.
    print(f"BPF programs loaded: {len(progs_before)} before, {len(progs_running)} running, {len(progs_after)} after")


@pytest.mark.root
def test_the_loader_describes_maps_as_the_kernel_has_them() -> None:
    require_ebpf()
    program = syscalls_program()
    loaded = load_program(program)
    try:
        stats, lost, generation = loaded["stats"], loaded["lost"], loaded["generation"]
        entries = int(next(f for f in program.cflags if f.startswith("-DSTATS_ENTRIES=")).partition("=")[2])
        assert (stats.info.type, stats.key_size, stats.info.value_size, stats.max_entries) == (
            BPF_MAP_TYPE_PERCPU_HASH,
            12,
            24 + 4 * HIST_SLOTS,
            entries,
        )
        assert stats.value_size == (24 + 4 * HIST_SLOTS) * stats.cpus
        assert (lost.info.type, lost.value_size) == (BPF_MAP_TYPE_PERCPU_ARRAY, 8 * lost.cpus)
        assert (generation.info.type, generation.value_size) == (BPF_MAP_TYPE_ARRAY, 4)
    finally:
        loaded.close()


BROKEN = {
    "clang": ("int x = ;\n", "broken.bpf.c:1:9: error: expected expression"),
    "verifier": (
        "BPF_HASH(h, u32, u64, 4);\n"
        "RAW_TRACEPOINT_PROBE(sys_enter) { u32 k = 0; u64 *v = h.lookup(&k); return *v; }\n",
        "bpf: Failed to load program: Permission denied: R0 invalid mem access 'map_value_or_null'",
    ),
    "attach": (
        "RAW_TRACEPOINT_PROBE(no_such_tracepoint) { return 0; }\n",
        "bpf_attach_raw_tracepoint (no_such_tracepoint): No such file or directory",
    ),
}


@pytest.mark.root
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_program_says_why_and_prints_nothing(kind: str, capfd: pytest.CaptureFixture[str]) -> None:
    require_ebpf()
    text, line = BROKEN[kind]
    held_before = held_bpf_objects()
    with pytest.raises(ProbeUnavailable) as exc:
        load_program(BpfProgram("broken.bpf.c", text, ()))
    assert exc.value.reason == f"broken.bpf.c does not load here: {line}"
    # clang, the verifier and the traceback went to the loader's pipe, not
    # to fd 1 or 2 (orac's terminal, where Textual draws).
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    # Only the child held what it loaded; nothing came over to this process.
    assert held_bpf_objects() == held_before


def held_bpf_objects() -> list[str]:
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("anon_inode:bpf-", "anon_inode:bpf_")):
            held.append(f"{fd} {target}")
    return held


def test_the_loader_child_imports_this_checkout():
    # The child runs `python -m probes.ebpf.loader` with PYTHONPATH put first:
    # a path that does not hold the package would run whatever orac is
    # installed instead of this code.
    from probes.host.aside import child_env, package_root

    assert child_env()["PYTHONPATH"].split(os.pathsep)[0] == package_root()
    assert (Path(package_root()) / "probes" / "ebpf" / "loader.py").resolve() == Path(ebpf_loader.__file__).resolve()


@pytest.mark.parametrize("source_name", ["syscalls.bpf.c", "offcpu.bpf.c", "profile.bpf.c"])
def test_the_shared_headers_go_in_with_lines_named_as_in_the_files(source_name: str) -> None:
    import importlib.resources

    original = importlib.resources.files("probes.sources").joinpath(source_name).read_text().splitlines()
    text = programs.program_text(source_name).splitlines()
    assert f'#include "{programs.SHARED_HEADER}"' in original
    assert not any(line.startswith('#include "') for line in text)
    # Each header's text where it was included; after it clang counts lines as
    # the source file does, so an error there names the line a reader finds in the file.
    rebuilt: list[str] = []
    headers: list[str] = []
    i = 0
    while i < len(text):
        included = re.fullmatch(r'#line 1 "([a-z_]+\.bpf\.h)"', text[i])
        if not included:
            rebuilt.append(text[i])
            i += 1
            continue
        name = included.group(1)
        header = importlib.resources.files("probes.ebpf").joinpath(name).read_text().splitlines()
        assert text[i + 1 : i + 1 + len(header)] == header
        rebuilt.append(f'#include "{name}"')
        headers.append(name)
        i += 1 + len(header)
        assert text[i] == f'#line {len(rebuilt) + 1} "{source_name}"'
        i += 1
    assert rebuilt == original
    expected = [programs.SHARED_HEADER] if source_name == "syscalls.bpf.c" else [programs.SHARED_HEADER, "python_frames.bpf.h"]
    assert headers == expected
