"""Writing a recording: `Recorder` appends frames to a new file (headless `orac record`, or the live UI's collector thread)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import zstandard

import probes.registry  # noqa: F401 - registers the names recordings give sample types
from probes.contract import Unavailable
from probes.model.frame import Frame
from probes.model.redaction import FrameRedactor
from probes.store.codec import (
    CodecError,
    Encoder,
    TypeTable,
)
from probes.store.format import (
    APPLICATION_ID,
    BUSY_TIMEOUT_S,
    FORMAT,
    FORMAT_VERSION,
    SCHEMA_SQL,
    RecordingError,
    _crc,
    _row_crc,
    _unavailable_json,
    orac_version,
)
from probes.store.private_files import PrivateDirectory, UnsafeDirectory

# A keyframe every minute at 1 s: reaching any frame decodes at most this
# many. On a synthetic busy server (benchmarks/recording) that is ~30 ms at
# worst against the 100 ms target, and keyframes are ~30% of the bytes; a
# longer period saves bytes and costs seek time in proportion.
KEYFRAME_EVERY = 60
# Frames reach the main file at least this often (a passive checkpoint), so a
# copy of the .orac alone made while recording, or after the recorder was
# killed, lacks only the last of them; the rest wait in the -wal file.
CHECKPOINT_EVERY = 60



ZSTD_LEVEL = 9



# SQLite's own files beside a database. SQLite opens them with O_NOFOLLOW but
# without O_EXCL, so a hard link planted under one of these names (in a
# sticky directory like /tmp) would be written through.
_SIDE_FILES = ("-journal", "-wal", "-shm")


def _create_files(path: Path, overwrite: bool) -> tuple[PrivateDirectory, int]:
    """Create the recording and SQLite's side files, empty, mode 0600, before SQLite opens them.

    Each is created with O_EXCL in a directory that only the caller (or
    root, with the sticky bit) controls, so SQLite finds orac's own files
    under every name it will use and never creates one itself (see
    `Recorder.__init__` for the journal modes that keep it so). Left-over
    side files of an earlier database of the same name are removed first:
    SQLite would otherwise replay them into this one.

    Returns the directory and a descriptor of the new file, to check later
    that SQLite opened this very file.
    """
    try:
        directory = PrivateDirectory(path.parent if str(path.parent) else ".")
    except UnsafeDirectory as exc:
        raise RecordingError(f"cannot record in {exc}") from None
    except OSError as exc:
        raise RecordingError(f"cannot record in {path.parent}: {exc.strerror}") from None
    name = path.name
    try:
        if overwrite:
            try:
                directory.unlink(name)
            except OSError as exc:
                raise RecordingError(f"cannot replace {path}: {exc.strerror}") from None
        try:
            fd = directory.create(name)
        except FileExistsError:
            raise RecordingError(f"{path} already exists; choose another file or remove it") from None
        except OSError as exc:
            raise RecordingError(f"cannot create {path}: {exc.strerror}") from None
        for suffix in _SIDE_FILES:
            try:
                directory.unlink(name + suffix)
                os.close(directory.create(name + suffix))
            except OSError as exc:
                os.close(fd)
                _remove(directory, name)
                raise RecordingError(f"cannot create {path}{suffix}: {exc.strerror}") from None
    except BaseException:
        directory.close()
        raise
    return directory, fd


def _remove(directory: PrivateDirectory, name: str) -> None:
    """Remove a recording that could not be started, so its name is free again."""
    for suffix in ("", *_SIDE_FILES):
        try:
            directory.unlink(name + suffix)
        except OSError:
            pass


def default_path(directory: str | os.PathLike[str] = ".", wall_ns: int | None = None) -> Path:
    """A new recording's name: orac-YYYYmmdd-HHMMSS.orac, in local time."""
    when = dt.datetime.fromtimestamp((wall_ns if wall_ns is not None else time.time_ns()) / 1e9)
    return Path(directory) / f"orac-{when:%Y%m%d-%H%M%S}.orac"


class Recorder:
    """Appends frames to a new recording file.

    Safe to use from two threads: the live UI's collector thread calls
    `append` while the UI thread may `close`; an append after close is
    ignored, so the UI can stop recording without stopping its collector.

    Raises:
        RecordingError: the file exists (unless `overwrite`), cannot be
            created, or a write fails (disk full, for instance).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval_s: float,
        probes: Iterable[str] = (),
        unavailable: Mapping[str, Unavailable] | None = None,
        redact: bool = True,
        overwrite: bool = False,
        keyframe_every: int = KEYFRAME_EVERY,
        host: str | None = None,
        kernel: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.frames = 0
        self._lock = threading.Lock()
        self._closed = False
        self._keyframe_every = max(1, keyframe_every)
        self._redactor = FrameRedactor() if redact else None
        self._types = TypeTable()
        self._encoder = Encoder(self._types)
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._prev: Frame | None = None
        self._base = 0
        self._unavailable: dict[str, Unavailable] = dict(unavailable or {})
        directory, fd = _create_files(self.path, overwrite)
        started = time.time_ns()
        meta = {
            "format": FORMAT,
            "host": host if host is not None else socket.gethostname(),
            "kernel": kernel if kernel is not None else os.uname().release,
            "orac_version": orac_version(),
            "interval_s": repr(float(interval_s)),
            "probes": json.dumps(list(probes)),
            "unavailable": _unavailable_json(self._unavailable),
            "started_wall_ns": str(started),
            "redacted": "true" if redact else "false",
            "keyframe_every": str(self._keyframe_every),
        }
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            if not directory.same_file(self.path.name, fd):
                raise RecordingError(f"{self.path} was replaced while it was being created; not recording")
            # WAL from the first write: a rollback journal would be created
            # and removed by SQLite at every transaction, and each new one
            # could meet a planted link. The switch itself uses the -journal
            # created above, once; the frames go to the -wal created above.
            db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL survives a killed process (the OS still has
            # the writes); only a power cut can lose the last transactions.
            # FULL would fsync every second.
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            db.executescript(f"BEGIN; {SCHEMA_SQL} COMMIT;")
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO meta (key, value, crc) VALUES (?, ?, ?)",
                [(key, value, _row_crc(key, value)) for key, value in meta.items()],
            )
            db.execute("COMMIT")
            # The header and tables go into the main file now, so a copy of
            # it alone, or a recorder killed before its first checkpoint,
            # still shows an orac recording.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (sqlite3.Error, RecordingError) as exc:
            if db is not None:
                db.close()
            _remove(directory, self.path.name)
            if isinstance(exc, RecordingError):
                raise
            raise RecordingError(f"cannot write {self.path}: {exc}") from None
        finally:
            os.close(fd)
            directory.close()
        self._db = db

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, frame: Frame) -> bool:
        """Store one frame in its own transaction; False if already closed."""
        with self._lock:
            if self._closed:
                return False
            if self._redactor is not None:
                frame = self._redactor.frame(frame)
            frame_id = self.frames + 1
            prev = self._prev
            keyframe = prev is None or frame_id - self._base >= self._keyframe_every
            reference = None if prev is None or keyframe else (prev.samples, prev.unavailable)
            try:
                payload = self._encoder.encode_frame(frame.samples, frame.unavailable, reference)
            except CodecError as exc:
                raise RecordingError(f"cannot record this frame: {exc}") from None
            data = self._compressor.compress(payload)
            base = frame_id if keyframe else self._base
            types, probes = self._types.unsaved()
            # What could not run: a probe's latest reason, forgotten once it
            # runs again (the live UI's eBPF probes are "starting" at first).
            unavailable = {name: why for name, why in self._unavailable.items() if name not in frame.samples}
            unavailable.update(frame.unavailable)
            db = self._db
            try:
                db.execute("BEGIN")
                for t in types:
                    fields = json.dumps(list(t.fields))
                    db.execute(
                        "INSERT INTO types (id, name, fields, crc) VALUES (?, ?, ?, ?)",
                        (t.type_id, t.name, fields, _row_crc(t.type_id, t.name, fields)),
                    )
                db.executemany(
                    "INSERT OR REPLACE INTO probes (name, type, version, crc) VALUES (?, ?, ?, ?)",
                    [(p.probe, p.type_name, p.version, _row_crc(p.probe, p.type_name, p.version)) for p in probes],
                )
                if unavailable != self._unavailable:
                    value = _unavailable_json(unavailable)
                    db.execute(
                        "UPDATE meta SET value = ?, crc = ? WHERE key = 'unavailable'",
                        (value, _row_crc("unavailable", value)),
                    )
                db.execute(
                    "INSERT INTO frames (id, wall_ns, mono_ns, base, data, crc) VALUES (?, ?, ?, ?, ?, ?)",
                    (frame_id, frame.wall_ns, frame.mono_ns, base, data,
                     _crc(frame_id, frame.wall_ns, frame.mono_ns, base, data)),
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back itself (a full disk, an I/O error)
                # The next frame starts afresh with a keyframe; unsaved types
                # stay unsaved and go with it.
                self._prev = None
                raise RecordingError(
                    f"cannot write {self.path}: {exc}; the {self.frames} frames before are saved"
                ) from None
            self._types.mark_saved()
            self._unavailable = unavailable
            self._prev = frame
            self._base = base
            self.frames = frame_id
            if frame_id % CHECKPOINT_EVERY == 0:
                try:
                    # PASSIVE: copies what no reader still needs, never waits.
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # the frames are safe in the -wal file; the next checkpoint retries
            return True

    def close(self) -> None:
        """Finish the file: one self-contained database, no -wal beside it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                # OFF, not DELETE: leaving WAL for DELETE makes SQLite create
                # a new -journal by name (see _SIDE_FILES).
                self._db.execute("PRAGMA journal_mode = OFF")
            except sqlite3.Error:
                # Another process is reading it (a replay of a file being
                # recorded): the checkpoint has still copied every frame
                # into the main file, which stays a valid database in WAL
                # mode.
                pass
            finally:
                self._db.close()
