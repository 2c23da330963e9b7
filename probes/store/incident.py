"""Incident bundles: a folder holding a recording, what was on screen, and a summary.md of the period.

One bundle is a private directory (probes.private_files: mode 0700, files
0600, never written through a planted link) named orac-incident-<time>:

- recording.orac: the frames of the period, as `orac record` writes them
  (redacted unless orac runs with --no-redact);
- screen-*.svg, .png, .txt: what the live screen showed when the bundle
  began (none for `orac incident`, which has no screen);
- summary.md: `summarize`'s account of the recording;
- *.folded: the stacks of every drill-down open during the period: its
  on-CPU profile and Python stacks (samples), and its off-CPU stacks
  (microseconds), as the drill-down's `f` writes them.

and beside it <folder>.tar.zst, the same files in one archive to attach to
a ticket. Everything in the summary is read back from the recording, so it
says only what the recording holds.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.contract import Views
from probes.model.bookmarks import Bookmark, Bookmarker
from probes.model.verdict import State, verdict
from probes.model.views import derive_frame
from probes.sources.offcpu import OFFCPU, OffCpuSample
from probes.sources.process_io import PROCESS_IO
from probes.sources.processes import PROCESSES
from probes.sources.profile import PROFILE, FoldedStacks, ProfileSample, folded_lines
from probes.sources.python_stacks import PYTHON_STACKS, PythonStacksSample
from probes.sources.syscalls import SYSCALLS
from probes.store.private_files import PrivateDirectory
from probes.store.reader import Recording

RECORDING_NAME = "recording.orac"
SUMMARY_NAME = "summary.md"
# rows in each of the summary's top-process tables
TOP = 5
# a command line's characters shown in the summary (the recording has them all)
COMMAND_CHARS = 100
# bookmarks listed in the summary at most
MAX_BOOKMARKS = 30


def bundle_name(wall_s: float | None = None) -> str:
    return "orac-incident-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(wall_s))


@dataclass
class _Process:
    name: str = ""
    command: str = ""
    cpu_s: float = 0.0
    peak_cpu_percent: float = 0.0
    peak_rss_bytes: int = 0
    read_bytes: float = 0.0
    write_bytes: float = 0.0
    syscalls: float = 0.0
    off_cpu_s: float = 0.0


@dataclass
class _Resource:
    """One verdict cell over the period: its worst state, when that began, and what it said then."""

    label: str
    worst: State = State.NO_DATA
    first_worst_ns: int = 0
    summary: str = ""
    culprit: str = ""
    frames_by_state: dict[State, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class Period:
    """What a recording's frames add up to (see `summarize`)."""

    host: str
    kernel: str
    interval_s: float
    redacted: bool
    frames: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    processes: dict[int, _Process] = field(default_factory=lambda: defaultdict(_Process))
    resources: dict[tuple[str, str], _Resource] = field(default_factory=dict)
    # target pid -> its on-CPU samples per stack, and its Python ones
    profiles: dict[int, FoldedStacks] = field(default_factory=lambda: defaultdict(FoldedStacks))
    python: dict[int, dict[tuple[str, ...], int]] = field(default_factory=dict)
    # target pid -> microseconds off CPU per stack, while its drill-down was open
    offcpu: dict[int, dict[tuple[str, ...], int]] = field(default_factory=dict)
    bookmarks: list[Bookmark] = field(default_factory=list)


def read_period(path: Path) -> Period:
    """Add up a recording: per-process totals, the verdict's course, the drill-downs' stacks.

    Raises RecordingError for a recording that cannot be read.
    """
    with Recording(path) as recording:
        meta = recording.meta
        period = Period(meta.host, meta.kernel, meta.interval_s, meta.redacted)
        prev = None
        marker = Bookmarker()
        for _, frame in recording.iter_frames():
            period.frames += 1
            period.first_ns = frame.wall_ns if period.first_ns is None else period.first_ns
            period.last_ns = frame.wall_ns
            _add_stacks(period, frame.samples)
            views = derive_frame(prev, frame)
            if prev is not None:
                _add_views(period, views, (frame.mono_ns - prev.mono_ns) / 1e9, frame.wall_ns)
                period.bookmarks += marker.add(frame.wall_ns, views)
            prev = frame
    return period


def _add_stacks(period: Period, samples: Mapping[str, Any]) -> None:
    """The stacks of the drill-downs open in this frame, as the drill-down's `f` writes them."""
    targets = set()
    profile: ProfileSample | None = samples.get(PROFILE.name)
    if profile is not None:
        period.profiles[profile.target_pid].add(profile)
        targets.add(profile.target_pid)
    python: PythonStacksSample | None = samples.get(PYTHON_STACKS.name)
    if python is not None:
        stacks = period.python.setdefault(python.target_pid, defaultdict(int))
        for stack in python.stacks:
            stacks[stack.frames] += stack.samples
        targets.add(python.target_pid)
    offcpu: OffCpuSample | None = samples.get(OFFCPU.name)
    if offcpu is None or not targets:
        return
    for blocked in offcpu.stacks:
        if blocked.pid in targets:
            period.offcpu.setdefault(blocked.pid, defaultdict(int))[blocked.folded()] += blocked.off_cpu_ns // 1000


def _add_views(period: Period, views: Views, dt_s: float, wall_ns: int) -> None:
    by_pid = period.processes
    processes = views.get(PROCESSES)
    if processes is not None:
        for p in processes.processes:
            row = by_pid[p.pid]
            row.name, row.command = p.name, p.command
            row.peak_rss_bytes = max(row.peak_rss_bytes, p.rss_bytes)
            if p.cpu_percent is not None:
                row.cpu_s += p.cpu_percent / 100.0 * dt_s
                row.peak_cpu_percent = max(row.peak_cpu_percent, p.cpu_percent)
    io_view = views.get(PROCESS_IO)
    if io_view is not None:
        for pid, rates in io_view.rates.items():
            if rates.read_bytes_per_s or rates.write_bytes_per_s:
                row = by_pid[pid]
                row.read_bytes += rates.read_bytes_per_s * dt_s
                row.write_bytes += rates.write_bytes_per_s * dt_s
    syscalls = views.get(SYSCALLS)
    if syscalls is not None:
        for s in syscalls.processes:
            row = by_pid[s.pid]
            row.name = row.name or s.comm
            row.syscalls += s.total.calls_per_s * dt_s
    offcpu = views.get(OFFCPU)
    if offcpu is not None:
        for o in offcpu.processes:
            row = by_pid[o.pid]
            row.name = row.name or o.comm
            row.off_cpu_s += o.off_cpu_s_per_s * dt_s
    for cell in verdict(views, wall_ns=wall_ns):
        resource = period.resources.setdefault((cell.resource, cell.label), _Resource(cell.label))
        resource.frames_by_state[cell.state] += 1
        if cell.state > resource.worst:
            resource.worst, resource.first_worst_ns, resource.summary = cell.state, wall_ns, cell.summary
            c = cell.contributor
            resource.culprit = f"{c.name} (pid {c.pid}): {c.figure}" if c is not None else ""


def _clock(wall_ns: int | None) -> str:
    if wall_ns is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall_ns / 1e9))


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _command(text: str) -> str:
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f}"


def summary_markdown(period: Period) -> str:
    """summary.md: host and period, the verdict's course, the top processes by each measure, drill-downs."""
    span_s = (period.last_ns - period.first_ns) / 1e9 if period.first_ns is not None and period.last_ns is not None else 0.0
    out = [
        f"# orac incident: {period.host}",
        "",
        f"- host: {period.host}, kernel {period.kernel}",
        f"- period: {_clock(period.first_ns)} to {_clock(period.last_ns)} ({span_s:.0f} s, {period.frames} frames,"
        f" one every {period.interval_s:g} s)",
        f"- command lines: {'redacted (secrets masked)' if period.redacted else 'NOT redacted (--no-redact)'}",
        f"- the frames: {RECORDING_NAME} (`orac replay {RECORDING_NAME}`, `orac dump {RECORDING_NAME}`)",
        "",
        "## Verdict over the period",
        "",
    ]
    if period.resources:
        rows = []
        for resource in sorted(period.resources.values(), key=lambda r: -r.worst):
            counts = ", ".join(f"{state.word} {n}" for state, n in sorted(resource.frames_by_state.items()) if n)
            since = _clock(resource.first_worst_ns) if resource.worst > State.OK else ""
            rows.append((resource.label, resource.worst.word, since, resource.summary, resource.culprit, counts))
        out += _table(("resource", "worst", "first at", "what it said then", "top contributor", "frames by state"), rows)
    else:
        out.append("No verdict: the recording has fewer than two frames.")
    out += ["", "## Moments marked", ""]
    if period.bookmarks:
        out += [f"- {mark.line()}" for mark in period.bookmarks[:MAX_BOOKMARKS]]
        if len(period.bookmarks) > MAX_BOOKMARKS:
            out.append(f"- ... and {len(period.bookmarks) - MAX_BOOKMARKS} more (`orac replay`, `b`)")
    else:
        out.append("None: nothing began in the period (probes.model.bookmarks says what would).")
    measures: list[tuple[str, Callable[[_Process], float], tuple[str, ...], Callable[[int, _Process], tuple[str, ...]]]] = [
        ("CPU", lambda p: p.cpu_s, ("pid", "name", "CPU s", "peak CPU %", "command"),
         lambda pid, p: (str(pid), p.name, f"{p.cpu_s:.1f}", f"{p.peak_cpu_percent:.0f}", _command(p.command))),
        ("memory", lambda p: p.peak_rss_bytes, ("pid", "name", "peak RSS MiB", "command"),
         lambda pid, p: (str(pid), p.name, _mib(p.peak_rss_bytes), _command(p.command))),
        ("storage I/O", lambda p: p.read_bytes + p.write_bytes, ("pid", "name", "read MiB", "written MiB", "command"),
         lambda pid, p: (str(pid), p.name, _mib(p.read_bytes), _mib(p.write_bytes), _command(p.command))),
        ("syscalls", lambda p: p.syscalls, ("pid", "name", "syscalls", "command"),
         lambda pid, p: (str(pid), p.name, f"{p.syscalls:.0f}", _command(p.command))),
        ("off-CPU time", lambda p: p.off_cpu_s, ("pid", "name", "off-CPU thread-s", "command"),
         lambda pid, p: (str(pid), p.name, f"{p.off_cpu_s:.1f}", _command(p.command))),
    ]
    for title, key, header, row in measures:
        top = sorted(((pid, p) for pid, p in period.processes.items() if key(p) > 0), key=lambda item: -key(item[1]))
        out += ["", f"## Top processes by {title}", ""]
        if top:
            out += _table(header, (row(pid, p) for pid, p in top[:TOP]))
        else:
            out.append(f"None measured: the recording has no {title} figures (its probe did not run, or nothing moved).")
    out += ["", "## Drill-downs", ""]
    stacked = sorted(set(period.profiles) | set(period.python))
    if stacked:
        for pid in stacked:
            name = period.processes[pid].name if pid in period.processes else "?"
            files = [f"drilldown-{pid}-{kind}.folded" for kind, have in (
                ("profile", pid in period.profiles), ("python", pid in period.python), ("offcpu", pid in period.offcpu),
            ) if have]
            out.append(f"- {name} (pid {pid}): " + ", ".join(files))
    else:
        out.append("No drill-down was open during the period.")
    return "\n".join(out) + "\n"


def folded_files(period: Period) -> dict[str, list[str]]:
    """name -> folded-stack lines of each drill-down's profile and Python stacks over the period."""
    files = {f"drilldown-{pid}-profile.folded": stacks.lines() for pid, stacks in period.profiles.items()}
    files.update({f"drilldown-{pid}-python.folded": folded_lines(stacks) for pid, stacks in period.python.items()})
    files.update({f"drilldown-{pid}-offcpu.folded": folded_lines(stacks) for pid, stacks in period.offcpu.items()})
    return {name: lines for name, lines in files.items() if lines}


def finish_bundle(directory: Path) -> Path:
    """Write summary.md and the drill-downs' stacks from the folder's recording, then the .tar.zst beside it.

    Returns the archive's path. Raises RecordingError (an unreadable
    recording) or OSError (a file that cannot be written; the folder keeps
    what was written before).
    """
    period = read_period(directory / RECORDING_NAME)
    with PrivateDirectory(directory) as private:
        texts = {SUMMARY_NAME: summary_markdown(period)}
        texts.update({name: "\n".join(lines) + "\n" for name, lines in folded_files(period).items()})
        for name, text in texts.items():
            private.unlink(name)
            with os.fdopen(private.create(name), "w", encoding="utf-8") as f:
                f.write(text)
    return archive(directory)


def archive(directory: Path) -> Path:
    """<directory>.tar.zst of the folder's files (mode 0600), written beside it; returns its path."""
    import zstandard

    target = directory.with_name(directory.name + ".tar.zst")
    with PrivateDirectory(directory.parent) as parent:
        parent.unlink(target.name)
        fd = parent.create(target.name)
    with os.fdopen(fd, "wb") as raw, zstandard.ZstdCompressor(level=10).stream_writer(raw) as packed:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(directory.iterdir()):
                if path.is_file() and not path.is_symlink():
                    tar.add(path, arcname=f"{directory.name}/{path.name}", recursive=False)
        packed.write(buffer.getvalue())
    return target
