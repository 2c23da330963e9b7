"""The "cpu" probe: /proc parsers and SystemProbe.sample on recorded fixtures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from probes.contract import ProbeUnavailable
from probes.host.procfs import NS_PER_TICK
from probes.sources.system import (
    CpuTimes,
    MemorySample,
    Pressure,
    SystemProbe,
    derive_system,
    parse_loadavg,
    parse_meminfo,
    parse_pressure,
    parse_proc_stat,
    parse_vmstat_faults,
)

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
T0 = FIXTURES / "t0"
T1 = FIXTURES / "t1"
KIB = 1024


def ticks(*values: int) -> CpuTimes:
    return CpuTimes(*(v * NS_PER_TICK for v in values))


# --- parse_proc_stat -------------------------------------------------------


def test_parse_proc_stat_fixture() -> None:
    total, cpus, ctxt, intr = parse_proc_stat((T0 / "stat").read_text())
    # The 9th and 10th columns (guest, guest_nice) are already inside user and
    # nice, so they must be left out: cpu0 has guest=900 in the fixture.
    assert total == ticks(18000, 500, 7000, 165000, 3000, 300, 400, 100)
    assert cpus == (
        replace(ticks(10000, 500, 4000, 80000, 1000, 200, 300, 100), cpu_id=0),
        replace(ticks(8000, 0, 3000, 85000, 2000, 100, 100, 0), cpu_id=1),
    )
    assert total.cpu_id is None
    assert total.total_ns == (18000 + 500 + 7000 + 165000 + 3000 + 300 + 400 + 100) * NS_PER_TICK
    # The first number of "intr" is the total; the per-IRQ columns are not.
    assert (ctxt, intr) == (1_000_000, 500_000)


def test_parse_proc_stat_old_kernel_short_cpu_lines() -> None:
    # Linux 2.4 style: only user nice system idle; the rest count as zero.
    text = "cpu  4 3 2 1\ncpu0 4 3 2 1\nctxt 7\nintr 9 1 2\n"
    total, cpus, ctxt, intr = parse_proc_stat(text)
    assert total == ticks(4, 3, 2, 1, 0, 0, 0, 0)
    assert cpus == (replace(total, cpu_id=0),)
    assert (ctxt, intr) == (7, 9)


def test_parse_proc_stat_keeps_cpu_numbers_when_one_is_offline() -> None:
    text = "cpu  2 0 0 0\ncpu0 1 0 0 0\ncpu2 1 0 0 0\nctxt 1\nintr 1\n"
    _, cpus, _, _ = parse_proc_stat(text)
    assert [c.cpu_id for c in cpus] == [0, 2]


def test_parse_proc_stat_without_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_proc_stat("ctxt 1\nintr 2\n")


# --- parse_meminfo ---------------------------------------------------------


def test_parse_meminfo_fixture() -> None:
    mem = parse_meminfo((T0 / "meminfo").read_text())
    assert mem == MemorySample(
        total_bytes=8_000_000 * KIB,
        free_bytes=2_000_000 * KIB,
        available_bytes=5_000_000 * KIB,
        buffers_bytes=100_000 * KIB,
        # Cached + SReclaimable, as free(1) counts it: 2_500_000 + 200_000
        cached_bytes=2_700_000 * KIB,
        swap_total_bytes=1_000_000 * KIB,
        swap_free_bytes=900_000 * KIB,
        shmem_bytes=40_000 * KIB,
    )


def test_meminfo_recorded_before_shmem_was_kept_has_none() -> None:
    # A recording made before orac kept Shmem builds its sample without it.
    mem = MemorySample(8 * KIB, 2 * KIB, 5 * KIB, 1 * KIB, 3 * KIB, 0, 0)
    assert mem.shmem_bytes is None


def test_parse_meminfo_without_memavailable_falls_back_to_memfree() -> None:
    # Kernels before 3.14 have no MemAvailable, and some have no swap lines.
    mem = parse_meminfo("MemTotal: 1000 kB\nMemFree: 300 kB\nCached: 100 kB\n")
    assert mem.available_bytes == 300 * KIB
    assert mem.cached_bytes == 100 * KIB
    assert (mem.buffers_bytes, mem.swap_total_bytes, mem.swap_free_bytes) == (0, 0, 0)


# --- parse_vmstat_faults ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ((T0 / "vmstat").read_text(), (2_000_000, 300)),
        ((T1 / "vmstat").read_text(), (2_004_500, 312)),
        ("pgpgin 1\npgfree 2\n", (None, None)),
        ("pgfault 10\n", (10, None)),
        # a longer name that starts with "pgfault" is a different counter
        ("pgfault 5\npgmajfault 6\npgfault_other 99\npgmajfault_x 98\n", (5, 6)),
        ("", (None, None)),
    ],
)
def test_parse_vmstat_faults(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_vmstat_faults(text) == expected


# --- parse_pressure --------------------------------------------------------


def test_parse_pressure_some_and_full() -> None:
    p = parse_pressure((T0 / "pressure" / "io").read_text())
    assert p == Pressure(some_avg10=3.0, some_total_us=300_000, full_avg10=2.5, full_total_us=250_000)


def test_parse_pressure_cpu_without_full_line() -> None:
    # Before Linux 5.13 /proc/pressure/cpu has only a "some" line; "full" is
    # unknown there, so None, not 0.
    p = parse_pressure((T0 / "pressure" / "cpu").read_text())
    assert p == Pressure(some_avg10=1.5, some_total_us=5_000_000, full_avg10=None, full_total_us=None)


def test_parse_pressure_full_zero_is_zero_not_none() -> None:
    p = parse_pressure(
        "some avg10=0.00 avg60=0.12 avg300=0.11 total=5777623\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )
    assert (p.full_avg10, p.full_total_us) == (0.0, 0)
    assert p.some_total_us == 5_777_623


# --- parse_loadavg ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.52 0.58 0.59 2/345 12345\n", (0.52, 0.58, 0.59)),
        ("12.00 8.50 3.25 40/1000 999\n", (12.0, 8.5, 3.25)),
    ],
)
def test_parse_loadavg(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_loadavg(text) == expected


# --- SystemProbe on fixtures -----------------------------------------------


def test_system_probe_samples_fixture() -> None:
    probe = SystemProbe(proc=str(T1))
    probe.start()
    s = probe.sample()
    probe.stop()
    assert s.uptime_s == 10001.0
    assert s.load_avg == (0.61, 0.60, 0.59)
    assert len(s.cpus) == 2
    assert s.cpu_total == ticks(18035, 510, 7020, 165110, 3015, 302, 403, 105)
    assert (s.context_switches, s.interrupts) == (1_012_345, 503_000)
    assert (s.page_faults, s.major_page_faults) == (2_004_500, 312)
    assert s.memory.free_bytes == 1_900_000 * KIB
    assert set(s.pressure) == {"cpu", "memory", "io"}
    assert s.pressure["cpu"] == Pressure(1.5, 5_020_000, None, None)
    assert s.pressure["memory"] == Pressure(0.25, 100_500, 0.12, 80_400)
    assert s.pressure["io"] == Pressure(3.0, 301_000, 2.5, 250_600)


@pytest.fixture
def proc_copy(tmp_path: Path) -> Path:
    """A writable copy of t0, to break on purpose."""
    root = tmp_path / "proc"
    shutil.copytree(T0, root)
    return root


def test_missing_pressure_directory_is_none_never_zero(proc_copy: Path) -> None:
    # Kernels without CONFIG_PSI have no /proc/pressure at all.
    shutil.rmtree(proc_copy / "pressure")
    s = SystemProbe(proc=str(proc_copy)).sample()
    assert s.pressure == {"cpu": None, "memory": None, "io": None}


def test_one_missing_or_empty_pressure_file_is_none(proc_copy: Path) -> None:
    (proc_copy / "pressure" / "memory").unlink()
    # psi=0 on the command line: the file exists but reads fail or are empty
    (proc_copy / "pressure" / "io").write_text("")
    s = SystemProbe(proc=str(proc_copy)).sample()
    assert s.pressure["memory"] is None
    assert s.pressure["io"] is None
    assert s.pressure["cpu"] == Pressure(1.5, 5_000_000, None, None)


def test_missing_vmstat_gives_none_faults(proc_copy: Path) -> None:
    (proc_copy / "vmstat").unlink()
    s = SystemProbe(proc=str(proc_copy)).sample()
    assert (s.page_faults, s.major_page_faults) == (None, None)


def test_start_without_proc_stat_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ProbeUnavailable) as info:
        SystemProbe(proc=str(tmp_path)).start()
    assert "stat" in info.value.reason
    assert info.value.remedy


def test_system_probe_on_real_proc() -> None:
    probe = SystemProbe()
    probe.start()
    s = probe.sample()
    assert s.cpus and s.memory.total_bytes > 0
    assert s.cpu_total.total_ns > 0
    assert s.uptime_s > 0


def test_read_text_reads_proc_files_served_a_page_at_a_time() -> None:
    from probes.host.procfs import read_text

    # /proc/self/maps of this interpreter is several pages; the kernel hands
    # it out a page per read, so one read would cut it short.
    maps = read_text("/proc/self/maps")
    assert maps is not None and len(maps) > 4096
    assert maps.endswith("\n") and "[stack]" in maps


# --- against procps free ---------------------------------------------------

FREE = shutil.which("free")
MIB = 1 << 20
# What a file in /dev/shm adds to Shmem: enough that the old "used" (which
# left shared memory out) is off by far more than the tolerance.
SHM_FILE_BYTES = 256 * MIB
# Memory moves between the readings (other processes, `free` starting): the
# orac figure must lie within the range of two `free -b` readings taken just
# before and after it, widened by this much.
FREE_TOLERANCE_BYTES = 32 * MIB


def free_b() -> dict[str, int]:
    """The Mem: line of `free -b`, by column name."""
    lines = subprocess.run([FREE or "free", "-b"], capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(zip(lines[0].split(), map(int, lines[1].split()[1:]), strict=True))


def procps_major() -> int:
    out = subprocess.run([FREE or "free", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)\.\d+", out)
    return int(match.group(1)) if match else 0


@pytest.mark.skipif(FREE is None, reason="procps free is not installed (apt-get install procps)")
def test_memory_figures_agree_with_free_with_a_file_in_dev_shm() -> None:
    if procps_major() < 4:
        pytest.skip("procps free before 4.0 counts used as total - free - buff/cache, not total - available")
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = f"/dev/shm/orac-test-{os.getpid()}"
    try:
        with open(path, "wb") as f:
            for _ in range(SHM_FILE_BYTES // MIB):
                f.write(b"\1" * MIB)
        before = free_b()
        sample = SystemProbe().sample()
        after = free_b()
    finally:
        os.unlink(path)
    view = derive_system(sample, sample, 1.0)
    figures = {
        "used": view.memory_used_bytes,
        "free": view.memory_free_bytes,
        "shared": view.memory_shmem_bytes,
        "buff/cache": view.memory_buffers_bytes + view.memory_cached_bytes,
        "available": view.memory_available_bytes,
    }
    for column, value in figures.items():
        low = min(before[column], after[column]) - FREE_TOLERANCE_BYTES
        high = max(before[column], after[column]) + FREE_TOLERANCE_BYTES
        assert value is not None and low <= value <= high, (column, value, before[column], after[column])
    assert view.memory_total_bytes == before["total"]
    assert view.memory_shmem_bytes is not None and view.memory_shmem_bytes >= SHM_FILE_BYTES
