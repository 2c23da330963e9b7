"""The "procio" probe: per-process storage I/O in the process table, recorded and replayed."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from support.harness import make_app, until_drawn
from support.loop_device import MIB, direct_io, loop_filesystem

from probes.model.frame import Frame
from probes.sources.process_io import (
    PROCESS_IO,
    ProcessIoCounters,
    ProcessIoProbe,
    ProcessIoSample,
    derive_process_io_view,
)
from probes.store.reader import Recording
from probes.store.writer import Recorder

ROOT = Path(__file__).resolve().parents[1]


def test_n_mib_written_with_o_direct_show_in_the_writers_row(tmp_path: Path) -> None:
    n_mib = 16
    with loop_filesystem(tmp_path) as fs, direct_io() as helper:
        probe = ProcessIoProbe()
        probe.start()
        before = probe.sample()
        assert helper.call(f"write {fs.mount / 'data'} {n_mib} 1024") == [str(n_mib * MIB)]
        after = probe.sample()
        probe.stop()
    assert before.mono_ns is not None and after.mono_ns is not None
    dt_s = (after.mono_ns - before.mono_ns) / 1e9
    rates = derive_process_io_view(before, after, dt_s).rates[helper.pid]
    # write_bytes counts the allocation's metadata too (a few KiB): within 2 %
    assert rates.write_bytes_per_s * dt_s == pytest.approx(n_mib * MIB, rel=0.02)
    assert rates.read_bytes_per_s * dt_s < 0.02 * n_mib * MIB


def test_other_users_processes_are_denied_not_zero() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the probe as another user")
    code = (
        "import os, subprocess, sys; os.setgid(65534); os.setuid(65534)\n"
        # having changed credentials, this process is not dumpable: its own
        # io is denied too; a program it starts is nobody's in full
        "own = subprocess.Popen(['sleep', '30'])\n"
        "from probes.sources.process_io import ProcessIoProbe\n"
        "p = ProcessIoProbe(); p.start(); s = p.sample(); own.kill()\n"
        "parent = int(sys.argv[1])\n"
        "print(parent in s.denied, any(q.pid == parent for q in s.processes), any(q.pid == own.pid for q in s.processes))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(os.getpid())], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.split() == ["True", "False", "True"], result.stderr


def sample(t: int, pids: dict[int, tuple[int, int]], denied: tuple[int, ...] = ()) -> ProcessIoSample:
    """Counters at second t of processes writing and reading at fixed rates (pid -> (read B/s, write B/s))."""
    return ProcessIoSample(
        tuple(ProcessIoCounters(pid, 100, r * t, w * t, 0, 250_000_000 * t) for pid, (r, w) in pids.items()),
        denied, True, (1000 + t) * 1_000_000_000,
    )


RATES = {978: (4 * MIB, 64 * MIB), 2002: (0, 512 * 1024), 977: (12 * MIB, 0)}


def test_samples_round_trip_through_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "io.orac"
    with Recorder(path, interval_s=1.0, probes=["procio"]) as recorder:
        for t in (0, 1):
            recorder.append(Frame((1_764_000_000 + t) * 10**9, (1000 + t) * 10**9,
                                  {"procio": sample(t, RATES, (1200,))}, {}))
    frames = [f for _, f in Recording(path).iter_frames(range(2))]
    assert frames[1].samples["procio"] == sample(1, RATES, (1200,))
    view = PROCESS_IO.derive(frames[0].samples["procio"], frames[1].samples["procio"], 1.0)
    assert view.rates[978].write_bytes_per_s == 64 * MIB and view.rates[978].blkio_delay_percent == 25.0
    assert view.denied == (1200,)


async def test_the_process_table_shows_io_and_sorts_by_it_with_b() -> None:
    from support.synthetic import frames

    from tui.process_table import ProcessTable

    shown = [
        replace(f, samples={**f.samples, "procio": sample(t, RATES, (1200,))}) for t, f in enumerate(frames())
    ]
    app = make_app(shown)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_drawn(pilot, app, shown)
        table = app.query_one(ProcessTable)
        await pilot.press("B")
        await pilot.pause()
        assert [p.pid for p, _ in table.rows][:3] == [978, 2002, 977]
        cells = {p.pid: {c.key: c.text(p) for c in table.columns} for p, _ in table.rows}
        assert cells[978]["io_write"] == "64.0M" and cells[978]["io_read"] == "4.0M" and cells[978]["io_delay"] == "25.0"
        # nginx (1200) is www-data's: not readable, "-" rather than 0
        assert cells[1200]["io_write"] == "-" and cells[1200]["io_delay"] == "-"
        # a process with no I/O reads 0
        assert cells[2002]["io_read"] == "0B"
