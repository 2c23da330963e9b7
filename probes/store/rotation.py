"""Recording as a service: `orac record --daemon`, a directory of files that rotate and expire.

The directory holds orac-YYYYmmdd-HHMMSS.orac files, each named by the
local time of its first frame. A file is closed and the next one begun
(`RotatingRecorder`) when it reaches `rotate_bytes`, when the local date
changes (one file per day at most), or after `rotate_s` when given. The
switch happens between two samples: the frame that ends one file's time
is the last of that file and the next sample the first of the next, so no
frame is lost or written twice (the next file's first frame has no rates,
as any recording's first frame).

After each switch, and at start, `expired` decides which older files go:
the oldest first while any is older than `keep_s`, then while the files
together exceed `keep_bytes`; never the file being written. A file that
cannot be read is counted by its size and expires by its name's time like
the others.

`find_at` picks, for `orac replay DIR --at T`, the file whose frames span
T, or the first one after T; files that cannot be opened are skipped and
named.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probes.contract import Unavailable
from probes.model.frame import Frame
from probes.store.format import RecordingError

if TYPE_CHECKING:
    from probes.store.writer import Recorder

# orac-YYYYmmdd-HHMMSS.orac, or -2, -3 ... for more files begun in one second
NAME = re.compile(r"^orac-(\d{8}-\d{6})(?:-(\d+))?\.orac$")
DEFAULT_ROTATE_BYTES = 64 << 20
DEFAULT_KEEP_S = 7 * 86400.0
DEFAULT_KEEP_BYTES = 1 << 30
# where `orac record --daemon` writes as root (the README's unit file too)
DAEMON_DIR = Path("/var/log/orac")


@dataclass(frozen=True, slots=True)
class Policy:
    """When to switch files and which to keep; None turns a limit off."""

    rotate_bytes: int | None = DEFAULT_ROTATE_BYTES
    rotate_s: float | None = None
    keep_s: float | None = DEFAULT_KEEP_S
    keep_bytes: int | None = DEFAULT_KEEP_BYTES


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: Path
    # the local time its name gives (its first frame), as Unix seconds
    started_s: float
    size_bytes: int
    # its place among files begun in the same second
    order: int = 1


def file_size(path: Path) -> int:
    """The recording's bytes on disk, its write-ahead log included."""
    total = 0
    for name in (path, Path(f"{path}-wal")):
        try:
            total += name.stat().st_size
        except OSError:
            pass
    return total


def stored_files(directory: Path) -> list[StoredFile]:
    """The directory's recordings orac named, oldest first."""
    files = []
    for entry in os.scandir(directory):
        match = NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        started = dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").timestamp()
        files.append(StoredFile(Path(entry.path), started, file_size(Path(entry.path)), int(match.group(2) or 1)))
    return sorted(files, key=lambda f: (f.started_s, f.order))


def expired(files: Sequence[StoredFile], now_s: float, policy: Policy, current: Path | None) -> list[StoredFile]:
    """The files to delete, oldest first (see the module's rules); never `current`."""
    kept = [f for f in files if f.path != current]
    total = sum(f.size_bytes for f in files)
    gone = []
    for f in kept:
        too_old = policy.keep_s is not None and now_s - f.started_s > policy.keep_s
        too_big = policy.keep_bytes is not None and total > policy.keep_bytes
        if not (too_old or too_big):
            break
        gone.append(f)
        total -= f.size_bytes
    return gone


def remove(files: Iterable[StoredFile]) -> list[Path]:
    """Delete each file and its write-ahead log; the paths removed."""
    removed = []
    for f in files:
        for name in (f.path, Path(f"{f.path}-wal"), Path(f"{f.path}-shm")):
            try:
                name.unlink()
            except FileNotFoundError:
                continue
            if name == f.path:
                removed.append(name)
    return removed


class RotatingRecorder:
    """Appends frames to the directory's current file, switching files and expiring old ones per `policy`.

    `clock` gives Unix seconds (tests pass their own). Raises
    RecordingError as Recorder does: a directory that cannot be written,
    a disk that fills (the files written before stay readable).
    """

    def __init__(
        self,
        directory: Path,
        policy: Policy,
        *,
        interval_s: float,
        probes: Sequence[str],
        unavailable: dict[str, Unavailable] | None = None,
        redact: bool = True,
        clock: Callable[[], float],
        on_switch: Callable[[Path, list[Path]], None] | None = None,
    ) -> None:
        from probes.store.private_files import PrivateDirectory

        try:
            PrivateDirectory(directory, create=True).close()
        except OSError as exc:
            raise RecordingError(f"cannot record in {directory}: {exc.strerror or exc}") from None
        self.directory = directory
        self.policy = policy
        self._interval_s = interval_s
        self._probes = list(probes)
        self._redact = redact
        self._unavailable = unavailable
        self._clock = clock
        self._on_switch = on_switch
        self._recorder: Recorder | None = None
        self._opened_s = 0.0
        self.frames = 0
        self.files = 0

    @property
    def path(self) -> Path | None:
        return self._recorder.path if self._recorder is not None else None

    def append(self, frame: Frame) -> None:
        if self._recorder is None or self._due(frame):
            self._switch(frame)
        assert self._recorder is not None
        self._recorder.append(frame)
        self.frames += 1

    def _due(self, frame: Frame) -> bool:
        assert self._recorder is not None
        policy = self.policy
        if policy.rotate_bytes is not None and file_size(self._recorder.path) >= policy.rotate_bytes:
            return True
        now_s = frame.wall_ns / 1e9
        if policy.rotate_s is not None and now_s - self._opened_s >= policy.rotate_s:
            return True
        return dt.date.fromtimestamp(now_s) != dt.date.fromtimestamp(self._opened_s)

    def _switch(self, frame: Frame) -> None:
        # SQLite and zstd are loaded only to record: `orac --help` imports this module.
        from probes.store.writer import Recorder, default_path

        if self._recorder is not None:
            self._recorder.close()
        first = default_path(self.directory, wall_ns=frame.wall_ns)
        path, n = first, 2
        while path.exists():
            # two switches within a second (a tiny rotate size)
            path, n = first.with_name(f"{first.stem}-{n}.orac"), n + 1
        self._recorder = Recorder(
            path, interval_s=self._interval_s, probes=self._probes, redact=self._redact,
            unavailable=frame.unavailable or self._unavailable,
        )
        self._opened_s = frame.wall_ns / 1e9
        self.files += 1
        removed = remove(expired(stored_files(self.directory), self._clock(), self.policy, path))
        if self._on_switch is not None:
            self._on_switch(path, removed)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None


def find_at(directory: Path, wall_ns: int) -> tuple[Path, list[str]]:
    """The recording holding `wall_ns`, or the first one after it; and a line for each file that could not be read.

    Raises RecordingError when no recording in the directory holds or follows that time.
    """
    from probes.store.reader import Recording

    bad: list[str] = []
    candidates = stored_files(directory)
    if not candidates:
        raise RecordingError(f"{directory} holds no orac recordings (orac-YYYYmmdd-HHMMSS.orac)")
    after: Path | None = None
    last_end: int | None = None
    for f in candidates:
        try:
            with Recording(f.path) as recording:
                if not len(recording):
                    continue
                first, last = recording.time_range
        except RecordingError as exc:
            bad.append(str(exc))
            continue
        if first <= wall_ns <= last:
            return f.path, bad
        if first > wall_ns and after is None:
            after = f.path
        last_end = last if last_end is None else max(last_end, last)
    if after is not None:
        return after, bad
    when = "" if last_end is None else f"; the last one ends {dt.datetime.fromtimestamp(last_end / 1e9):%Y-%m-%d %H:%M:%S}"
    raise RecordingError(f"no recording in {directory} holds or follows that time{when}")
