"""Recordings: frames stored in one SQLite file, read back and replayed.

A recording keeps raw samples, never derived rates: a replay derives its
views with the same `derive_frame` the live screen uses, so the two cannot
disagree. `Recorder` writes (headless `orac record`, or the live UI's
collector thread), `Recording` reads, `ReplaySource` plays a recording
through the same callback the live `Collector` uses, and `dump` prints
derived values for scripts.

File format (recording format 1)
--------------------------------
One SQLite file. Its header's application_id is 0x6F726163 ("orac") and its
user_version the recording format, so a reader tells an orac recording, a
newer one and some other database apart before touching a table. While
recording it is in WAL mode (the writer never blocks a reader, and a killed
writer loses at most the frame it was writing): its newest frames are in
FILE-wal beside it, and reach FILE itself at least every CHECKPOINT_EVERY
frames. `Recorder.close` checkpoints and leaves WAL mode, so a finished
recording is one self-contained file to copy or attach to an incident; a
recording whose recorder was killed is FILE and FILE-wal together.

``meta(key TEXT PRIMARY KEY, value TEXT, crc)``
    format ("orac recording"), host, kernel, orac_version, interval_s,
    probes (JSON list of the probes asked for), unavailable (JSON: probe ->
    {"reason", "remedy"}: the probes that could not run, and why, as last
    seen; each frame also keeps its own),
    started_wall_ns, redacted ("true"/"false"), keyframe_every.
``types(id INTEGER PRIMARY KEY, name TEXT, fields TEXT, crc)``
    The sample dataclasses the frames use: stable name and JSON list of field
    names (see probes.codec).
``probes(name TEXT PRIMARY KEY, type TEXT, version INTEGER, crc)``
    Each recorded probe's sample type and schema version.

    The `crc` of these three tables is the CRC-32 of the row's other values
    as text joined by NUL bytes, in column order.
``frames(id INTEGER PRIMARY KEY, wall_ns, mono_ns, base, data BLOB, crc)``
    Frame N of the recording (0-based) has id N+1. `data` is a zstd frame
    holding the probes.codec payload; `base` is the id of the keyframe the
    frame is decoded from (its own id for a keyframe; otherwise each frame
    is a delta against the frame before it). `crc` is the CRC-32 of
    (id, wall_ns, mono_ns, base) as four big-endian int64 and then `data`,
    so a flipped bit in a frame is reported, never shown as data. An index
    on wall_ns finds the frame at a time in microseconds.

A reader trusts nothing in a file: a frame row's values must have their
types and ranges before its checksum is computed, and every decoded sample
must fit its dataclass's type hints (probes.validation), or the frame is
reported corrupt in one line.

Each frame is written in its own transaction. Nothing from a process's
environment is stored (orac never samples environments), and command lines
have well-known secrets redacted unless the recorder is told otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import os
import signal
import socket
import sqlite3
import stat
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

import zstandard

from .base import Probe
from .codec import CodecError, Decoder, Encoder, ProbeRow, Schema, TypeRow, TypeTable, resolve_type
from .collector import MAX_INTERVAL_S, FrameCallback, sample_frame, start_probes
from .frame import Frame
from .playback import ReplayPosition
from .private_files import PrivateDirectory, UnsafeDirectory
from .redaction import FrameRedactor
from .validation import SampleValidator
from .views import derive_frame

FORMAT = "orac recording"
FORMAT_VERSION = 1
APPLICATION_ID = 0x6F726163  # "orac"
SQLITE_MAGIC = b"SQLite format 3\x00"
# A keyframe every minute at 1 s: reaching any frame decodes at most this
# many. On a synthetic busy server (benchmarks/recording) that is ~30 ms at
# worst against the 100 ms target, and keyframes are ~30% of the bytes; a
# longer period saves bytes and costs seek time in proportion.
KEYFRAME_EVERY = 60
# Frames reach the main file at least this often (a passive checkpoint), so a
# copy of the .orac alone made while recording, or after the recorder was
# killed, lacks only the last of them; the rest wait in the -wal file.
CHECKPOINT_EVERY = 60
# The header byte SQLite sets to 2 for a database in WAL mode.
WAL_HEADER_OFFSET = 18
ZSTD_LEVEL = 9
# Longer than any lock a healthy writer holds (one small transaction), short
# enough that a stuck lock gives the user an error rather than a hang.
BUSY_TIMEOUT_S = 2.0
# A frame's payload is tens of KB even at thousands of processes; a damaged
# header claiming more must not make the reader allocate it.
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
CACHE_FRAMES = 256
_ROW_HEADER = struct.Struct(">qqqq")
META_KEYS = frozenset({
    "format", "host", "kernel", "orac_version", "interval_s", "probes", "unavailable", "started_wall_ns",
    "redacted", "keyframe_every",
})

SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, fields TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE probes (name TEXT PRIMARY KEY, type TEXT NOT NULL, version INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE frames (
    id INTEGER PRIMARY KEY,
    wall_ns INTEGER NOT NULL,
    mono_ns INTEGER NOT NULL,
    base INTEGER NOT NULL,
    data BLOB NOT NULL,
    crc INTEGER NOT NULL
);
CREATE INDEX frames_wall_ns ON frames (wall_ns);
"""


class RecordingError(Exception):
    """A recording cannot be written or read. `str()` is one line for the user."""


def orac_version() -> str:
    """The installed orac's version; "unknown" when run from a checkout that is not installed."""
    try:
        return version("orac")
    except PackageNotFoundError:
        return "unknown"


def _crc(frame_id: int, wall_ns: int, mono_ns: int, base: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_ROW_HEADER.pack(frame_id, wall_ns, mono_ns, base)))


def _time_ok(value: object) -> bool:
    """A frame's wall_ns or mono_ns: an int from 0 (the epoch, or boot) to 2**63."""
    return type(value) is int and 0 <= value < 2**63


def _frame_row_ok(frame_id: object, wall_ns: object, mono_ns: object, base: object, data: object, crc: object) -> bool:
    """The types and ranges a frames row must have before its checksum can even be computed."""
    return (
        _time_ok(wall_ns) and _time_ok(mono_ns) and type(base) is int and 0 < base < 2**63
        and type(data) is bytes and type(crc) is int and 0 <= crc < 2**32 and type(frame_id) is int
    )


def _row_crc(*values: object) -> int:
    """CRC-32 of a meta, types or probes row: its values as text, NUL-separated."""
    return zlib.crc32("\0".join(map(str, values)).encode())


# --- metadata -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingMeta:
    """What a recording says about itself."""

    host: str
    kernel: str
    orac_version: str
    interval_s: float
    probes: tuple[str, ...]
    # probe -> (reason, remedy) for the probes that could not run, as last
    # seen: one that started late or recovered is not listed
    unavailable: dict[str, tuple[str, str]]
    started_wall_ns: int
    redacted: bool
    keyframe_every: int


def _unavailable_json(unavailable: Mapping[str, tuple[str, str]]) -> str:
    return json.dumps({name: {"reason": r, "remedy": f} for name, (r, f) in unavailable.items()})


# --- writing --------------------------------------------------------------------


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
        unavailable: Mapping[str, tuple[str, str]] | None = None,
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
        self._unavailable: dict[str, tuple[str, str]] = dict(unavailable or {})
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


# --- reading --------------------------------------------------------------------


def _check_header(path: Path) -> bytes:
    """Say what is wrong with a file that is not an orac recording, without SQLite; returns its header."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is
        # refused below like anything else that is not a regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise RecordingError(f"{path} is a directory, not an orac recording")
            if not stat.S_ISREG(mode):
                raise RecordingError(f"{path} is not a regular file, so not an orac recording")
            header = os.pread(fd, 100, 0)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    if not header:
        raise RecordingError(f"{path} is empty, not an orac recording")
    if not header.startswith(SQLITE_MAGIC[: len(header)]):
        raise RecordingError(f"{path} is not an orac recording")
    if len(header) < 100:
        raise RecordingError(f"{path} is truncated")
    if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise RecordingError(f"{path} is not an orac recording (it is some other SQLite database)")
    return header


class Recording:
    """A recording opened read-only.

    Frames are numbered from 0. Reading frame N decodes from the keyframe at
    or before it; recently decoded frames are kept, so stepping back and
    forth, and reading in order, decode one frame each.

    Raises:
        RecordingError: for a missing, empty, truncated, corrupt or foreign
            file, or one written by a newer orac; at open, or when the
            damaged frame is read. The message is one line.
    """

    def __init__(self, path: str | os.PathLike[str], *, cache_frames: int = CACHE_FRAMES) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, Frame] = OrderedDict()
        self._cache_frames = max(2, cache_frames)
        self._decompressor = zstandard.ZstdDecompressor()
        header = _check_header(self.path)
        # Set when the file can be read but not all of it was recorded there.
        self.warning: str | None = None
        # A file still in WAL mode is being recorded, or its recorder was
        # killed, and its last frames are in the -wal file beside it.
        self._wal = header[WAL_HEADER_OFFSET] == 2
        # mode=ro: a reader never changes the file, nor creates one by mistake.
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
        if self._wal and not os.path.exists(f"{self.path}-wal"):
            # A copy of the .orac alone: read what it holds, without making
            # SQLite create -wal and -shm files beside someone's copy.
            uri += "&immutable=1"
            self.warning = (
                f"{self.path} was not closed by its recorder and {self.path.name}-wal is not beside it:"
                f" the frames after its last checkpoint (up to {CHECKPOINT_EVERY}) are not in it"
            )
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                raise RecordingError(f"{self.path} is not an orac recording (it has no recording format)")
            # Far beyond any real format: a damaged header, not a newer orac.
            if not 0 < version < FORMAT_VERSION + 1000:
                raise RecordingError(f"{self.path} is corrupt (its header has recording format {version})")
            if version > FORMAT_VERSION:
                raise RecordingError(
                    f"{self.path} was written by a newer orac (recording format {version};"
                    f" this orac reads up to {FORMAT_VERSION}): upgrade orac"
                )
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "types", "probes", "frames"} <= tables:
                raise RecordingError(f"{self.path} is not an orac recording (it has no orac tables)")
            self.meta = self._read_meta()
            type_rows = [
                TypeRow(type_id, name, tuple(json.loads(fields)))
                for type_id, name, fields in self._checked("types", "SELECT id, name, fields, crc FROM types")
            ]
            probe_rows = [
                ProbeRow(*row) for row in self._checked("probes", "SELECT name, type, version, crc FROM probes")
            ]
            self._decoder = Decoder(Schema(type_rows, probe_rows))
            self._validator = SampleValidator(
                {row.probe: resolve_type(row.type_name) for row in probe_rows if row.type_name}
            )
            self._count: int = self._db.execute("SELECT count(*) FROM frames").fetchone()[0]
            first, last = self._db.execute("SELECT min(id), max(id) FROM frames").fetchone()
            if self._count and (first != 1 or last != self._count):
                raise RecordingError(f"{self.path} is corrupt (frames are missing)")
        except CodecError as exc:
            raise RecordingError(f"cannot replay {self.path}: {exc}") from None
        except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
            # ValueError and friends: metadata that is not what orac wrote.
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> RecordingError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return RecordingError(f"{self.path} is locked by another program")
        if self._wal and isinstance(exc, sqlite3.OperationalError) and (
            "unable to open" in str(exc) or "readonly" in str(exc)
        ):
            name = self.path.name
            return RecordingError(
                f"{self.path} keeps its last frames in {name}-wal, which SQLite reads only where it may create"
                f" {name}-shm: copy {name} and {name}-wal to a directory you can write to"
            )
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return RecordingError(f"{self.path} is corrupt or truncated ({detail})")

    def _checked(self, table: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a small table, without their checksum, each one verified."""
        rows = []
        for *values, crc in self._db.execute(sql):
            if _row_crc(*values) != crc:
                raise RecordingError(f"{self.path} is corrupt (a row of its {table} table fails its checksum)")
            rows.append(tuple(values))
        return rows

    def _read_meta(self) -> RecordingMeta:
        meta = dict(self._checked("meta", "SELECT key, value, crc FROM meta"))
        if meta.get("format") != FORMAT:
            raise RecordingError(f"{self.path} is not an orac recording")
        missing = META_KEYS - set(meta)
        if missing:
            raise RecordingError(f"{self.path} is corrupt (its metadata has no {sorted(missing)[0]!r})")
        unavailable = json.loads(meta["unavailable"])
        probes = json.loads(meta["probes"])
        interval_s = float(meta["interval_s"])
        started_wall_ns = int(meta["started_wall_ns"])
        keyframe_every = int(meta["keyframe_every"])
        if not (
            type(unavailable) is dict
            and all(
                type(entry) is dict and type(entry.get("reason")) is str and type(entry.get("remedy")) is str
                for entry in unavailable.values()
            )
            and type(probes) is list and all(type(name) is str for name in probes)
            and math.isfinite(interval_s) and 0 < interval_s <= MAX_INTERVAL_S
            and 0 <= started_wall_ns < 2**63 and 0 < keyframe_every < 2**31
            and meta["redacted"] in ("true", "false")
        ):
            raise ValueError("its metadata is not what orac writes")
        return RecordingMeta(
            host=meta["host"],
            kernel=meta["kernel"],
            orac_version=meta["orac_version"],
            interval_s=interval_s,
            probes=tuple(probes),
            unavailable={name: (entry["reason"], entry["remedy"]) for name, entry in unavailable.items()},
            started_wall_ns=started_wall_ns,
            redacted=meta["redacted"] == "true",
            keyframe_every=keyframe_every,
        )

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._cache.clear()

    def __len__(self) -> int:
        return self._count

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._damaged(exc) from None

    @property
    def time_range(self) -> tuple[int, int]:
        """Wall times (ns) of the first and last frames."""
        if not self._count:
            raise RecordingError(f"{self.path} has no frames")
        return self.timestamps(0)[0], self.timestamps(self._count - 1)[0]

    def timestamps(self, index: int) -> tuple[int, int]:
        """(wall_ns, mono_ns) of frame `index`, without decoding it."""
        self._check_index(index)
        rows = self._query("SELECT wall_ns, mono_ns FROM frames WHERE id = ?", (index + 1,))
        if not rows:
            raise RecordingError(f"{self.path} is corrupt (frame {index} is missing)")
        wall_ns, mono_ns = rows[0]
        if not _time_ok(wall_ns) or not _time_ok(mono_ns):
            raise RecordingError(f"{self.path} is corrupt (frame {index} has values of the wrong type or range)")
        return wall_ns, mono_ns

    def index_at(self, wall_ns: int) -> int:
        """The last frame at or before `wall_ns`; 0 when it precedes the recording."""
        rows = self._query(
            "SELECT id FROM frames WHERE wall_ns <= ? ORDER BY wall_ns DESC, id DESC LIMIT 1", (wall_ns,)
        )
        return rows[0][0] - 1 if rows else 0

    def index_range(self, from_wall_ns: int | None = None, to_wall_ns: int | None = None) -> range:
        """Indices of the frames from `from_wall_ns` to `to_wall_ns` (inclusive)."""
        start = 0
        stop = self._count
        if from_wall_ns is not None:
            rows = self._query("SELECT min(id) FROM frames WHERE wall_ns >= ?", (from_wall_ns,))
            start = rows[0][0] - 1 if rows[0][0] is not None else self._count
        if to_wall_ns is not None:
            rows = self._query("SELECT max(id) FROM frames WHERE wall_ns <= ?", (to_wall_ns,))
            stop = rows[0][0] if rows[0][0] is not None else 0
        return range(start, max(start, stop))

    def frame(self, index: int) -> Frame:
        """Frame `index` (0-based)."""
        self._check_index(index)
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            # Decode forward from the nearest frame already known: the one
            # before (stepping and playing), else the keyframe.
            rows = self._query("SELECT base FROM frames WHERE id = ?", (index + 1,))
            if not rows or type(rows[0][0]) is not int or not 1 <= rows[0][0] <= index + 1:
                raise RecordingError(f"{self.path} is corrupt (frame {index} has a bad keyframe link)")
            base = rows[0][0] - 1
            prev: Frame | None = None
            start = base
            for j in range(index - 1, base - 1, -1):
                if j in self._cache:
                    prev, start = self._cache[j], j + 1
                    break
            for frame_index, frame in self._decode_rows(start, index + 1, prev, base):
                self._remember(frame_index, frame)
            # the last one decoded, so the newest in the cache
            return self._cache[index]

    def iter_frames(self, indices: range | None = None) -> Iterator[tuple[int, Frame]]:
        """(index, frame) for the frames in `indices` (default: all), in order.

        Decodes sequentially without filling the cache, so a full dump of a
        day's recording holds two frames at a time.
        """
        indices = range(self._count) if indices is None else indices
        if not indices:
            return
        if indices.step != 1:
            raise ValueError("iter_frames reads consecutive frames")
        self._check_index(indices.start)
        self._check_index(indices[-1])
        first = self.frame(indices.start)
        yield indices.start, first
        prev = first
        chunk = 512
        for start in range(indices.start + 1, indices.stop, chunk):
            stop = min(start + chunk, indices.stop)
            with self._lock:
                decoded = list(self._decode_rows(start, stop, prev, None))
            for frame_index, frame in decoded:
                yield frame_index, frame
                prev = frame

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} is outside the recording (0 to {self._count - 1})")

    def _decode_rows(self, start: int, stop: int, prev: Frame | None, base: int | None) -> Iterator[tuple[int, Frame]]:
        """Decode frames start..stop-1 in order; `prev` is frame start-1 (None at a keyframe)."""
        rows = self._query(
            "SELECT id, wall_ns, mono_ns, base, data, crc FROM frames WHERE id > ? AND id <= ? ORDER BY id",
            (start, stop),
        )
        if len(rows) != stop - start:
            raise RecordingError(f"{self.path} is corrupt (frames are missing)")
        for frame_id, wall_ns, mono_ns, row_base, data, crc in rows:
            index = frame_id - 1
            if not _frame_row_ok(frame_id, wall_ns, mono_ns, row_base, data, crc):
                raise RecordingError(f"{self.path} is corrupt (frame {index} has values of the wrong type or range)")
            if _crc(frame_id, wall_ns, mono_ns, row_base, data) != crc:
                raise RecordingError(f"{self.path} is corrupt (frame {index} fails its checksum)")
            reference: tuple[Mapping[str, Any], Mapping[str, tuple[str, str]]] | None = None
            if row_base != frame_id:
                if row_base > frame_id or (base is not None and row_base != base + 1):
                    raise RecordingError(f"{self.path} is corrupt (frame {index} has a bad keyframe link)")
                if prev is None:
                    raise RecordingError(f"{self.path} is corrupt (frame {index} has no keyframe)")
                reference = (prev.samples, prev.unavailable)
            try:
                payload = self._decompressor.decompress(data, max_output_size=MAX_PAYLOAD_BYTES)
                samples, unavailable = self._decoder.decode_frame(payload, reference)
                self._validator.check(samples, unavailable)
            except (zstandard.ZstdError, CodecError) as exc:
                raise RecordingError(f"{self.path} is corrupt (frame {index}: {exc})") from None
            frame = Frame(wall_ns=wall_ns, mono_ns=mono_ns, samples=samples, unavailable=unavailable)
            yield index, frame
            prev = frame

    def _remember(self, index: int, frame: Frame) -> None:
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)


# --- headless recording ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordStats:
    """How a recording is going: passed to `on_progress` and returned by `record`."""

    path: Path
    frames: int
    file_bytes: int
    elapsed_s: float


def default_path(directory: str | os.PathLike[str] = ".", wall_ns: int | None = None) -> Path:
    """A new recording's name: orac-YYYYmmdd-HHMMSS.orac, in local time."""
    when = dt.datetime.fromtimestamp((wall_ns if wall_ns is not None else time.time_ns()) / 1e9)
    return Path(directory) / f"orac-{when:%Y%m%d-%H%M%S}.orac"


def _file_bytes(path: Path) -> int:
    total = 0
    for name in (str(path), f"{path}-wal"):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


def record(
    path: str | os.PathLike[str],
    probes: Sequence[Probe[Any]],
    interval_s: float,
    duration_s: float | None = None,
    *,
    redact: bool = True,
    overwrite: bool = False,
    on_progress: Callable[[RecordStats], None] | None = None,
    stop: threading.Event | None = None,
) -> RecordStats:
    """Record `probes` every `interval_s` into a new file, headless.

    Runs until `duration_s` has passed (the last sample is taken at
    duration_s, so a recording of D seconds holds D/interval intervals of
    rates), `stop` is set, or SIGINT/SIGTERM arrives; in each case the file
    is closed cleanly. Samples keep to a fixed schedule (start + k *
    interval); a tick missed because the machine was too busy is skipped,
    not caught up in a burst. `on_progress` is called after each frame.

    Raises:
        RecordingError: the file cannot be created or written, or no probe
            can run.
    """
    stop = stop if stop is not None else threading.Event()
    running, unavailable = start_probes(probes)
    try:
        if not running:
            reasons = "; ".join(f"{name}: {reason}" for name, (reason, _) in unavailable.items())
            raise RecordingError(f"no probe can run ({reasons})")
        with Recorder(
            path, interval_s=interval_s, probes=[p.name for p in probes], unavailable=unavailable,
            redact=redact, overwrite=overwrite,
        ) as recorder, _stop_on_signals(stop):
            start = time.monotonic()
            tick = 0
            while True:
                recorder.append(sample_frame(running, unavailable))
                now = time.monotonic()
                stats = RecordStats(recorder.path, recorder.frames, _file_bytes(recorder.path), now - start)
                if on_progress is not None:
                    on_progress(stats)
                tick = max(tick + 1, math.ceil((now - start) / interval_s))
                due = start + tick * interval_s
                # A little slack so that 10 s at 1 s ends with the sample at 10 s.
                if duration_s is not None and due - start > duration_s + interval_s / 10:
                    break
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
        return RecordStats(recorder.path, recorder.frames, _file_bytes(recorder.path), time.monotonic() - start)
    finally:
        for probe in running:
            probe.stop()


class _stop_on_signals:
    """Within the block, SIGINT and SIGTERM set `stop` instead of killing the
    process, so the recording is closed properly. Only the main thread can
    install handlers; elsewhere the caller's `stop` is the way to end it."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --- dump -----------------------------------------------------------------------

_plain_fields: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """A view as JSON-ready dicts and lists (dataclasses.asdict, minus its
    deep copies: ~10x faster at hundreds of processes a frame)."""
    t = type(value)
    if t in (int, float, str, bool) or value is None:
        return value
    if t is tuple or t is list:
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    fields = _plain_fields.get(t)
    if fields is None:
        fields = _plain_fields[t] = tuple(f.name for f in dataclasses.fields(value))
    return {name: _plain(getattr(value, name)) for name in fields}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Nested dicts, dataclasses and tuples as "a.b.0" columns."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), item) for i, item in enumerate(value))
    else:
        out[prefix] = value
        return
    for key, item in items:
        _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)


def dump(
    recording: Recording,
    format: str = "json",
    from_wall_ns: int | None = None,
    to_wall_ns: int | None = None,
    out: TextIO | None = None,
    *,
    table: str = "processes",
) -> int:
    """Write derived values of the frames between two times; return the rows written.

    Each frame's views are derived from the frame before it, as on screen,
    so the first frame of a recording (which has nothing before it) is not
    written.

    format="json": one JSON object per frame and line, shaped like `orac
    snapshot --json`: "index", "time" (Unix seconds), "interval_s",
    "system" (the cpu probe's view), "processes" (list, in pid order),
    "unavailable" (probe -> {"reason", "remedy"}), and any other probe's
    view under the probe's name.

    format="csv": a header, then with table="processes" one row per process
    per frame (time, index, then the process view's fields: pid ... command;
    an unknown CPU % is an empty cell), or with table="system" one row per
    frame with the system view flattened into columns ("cpu_total.busy_percent",
    "cpus.0.busy_percent", "load_avg.0", "pressure.io.some_avg10", ...).

    Raises:
        ValueError: unknown format or table.
        RecordingError: the recording is damaged where it is read.
    """
    if format not in ("json", "csv"):
        raise ValueError(f"unknown format {format!r}; choose json or csv")
    if table not in ("processes", "system"):
        raise ValueError(f"unknown table {table!r}; choose processes or system")
    out = out if out is not None else sys.stdout
    wanted = recording.index_range(from_wall_ns, to_wall_ns)
    if not wanted:
        return 0
    # Start one frame early: the first wanted frame's rates need it.
    first = max(0, wanted.start - 1)
    rows = 0
    writer: csv.DictWriter[str] | None = None
    prev: Frame | None = None
    for index, frame in recording.iter_frames(range(first, wanted.stop)):
        views = derive_frame(prev, frame) if prev is not None else {}
        interval_s = (frame.mono_ns - prev.mono_ns) / 1e9 if prev is not None else None
        prev = frame
        if index < wanted.start or not views:
            continue
        time_s = frame.wall_ns / 1e9
        if format == "json":
            data: dict[str, Any] = {"index": index, "time": time_s, "interval_s": interval_s}
            data["system"] = _plain(views["cpu"]) if "cpu" in views else None
            data["processes"] = _plain(views["procs"].processes) if "procs" in views else []
            data.update({name: _plain(view) for name, view in views.items() if name not in ("cpu", "procs")})
            data["unavailable"] = {name: {"reason": r, "remedy": f} for name, (r, f) in frame.unavailable.items()}
            out.write(json.dumps(data, separators=(",", ":")) + "\n")
            rows += 1
            continue
        records: list[dict[str, Any]] = []
        if table == "processes" and "procs" in views:
            records = [{"time": time_s, "index": index, **_plain(p)} for p in views["procs"].processes]
        elif table == "system" and "cpu" in views:
            flat: dict[str, Any] = {"time": time_s, "index": index}
            _flatten(_plain(views["cpu"]), "", flat)
            records = [flat]
        if records and writer is None:
            writer = csv.DictWriter(out, fieldnames=list(records[0]), restval="", extrasaction="ignore",
                                    lineterminator="\n")
            writer.writeheader()
        if writer is not None:
            writer.writerows(records)
            rows += len(records)
    return rows


# --- replay ---------------------------------------------------------------------

MIN_SPEED = 1.0
MAX_SPEED = 60.0
MAX_LAG_S = 1.0


def playback_delay_s(prev_mono_ns: int, next_mono_ns: int, speed: float, interval_s: float) -> float:
    """Seconds to show a frame before the next one at `speed`.

    The recorded gap is capped at two intervals: a longer one means the
    recording was paused or the machine slept, and the viewer should not sit
    through it.
    """
    gap_s = min(max(0.0, (next_mono_ns - prev_mono_ns) / 1e9), 2 * interval_s)
    return gap_s / speed


class ReplaySource:
    """Plays a Recording through the live collector's path.

    The same interface as probes.collector.Collector (start(on_frame),
    stop(), refresh(), paused, live, interval_s): on its own thread it calls
    on_frame(frame, views) with views derived from the frame before, so the
    panes cannot tell replay from live, and stepping back derives exactly
    what was shown going forward.

    Every control may be called from any thread; the player thread does the
    reading and deriving. Playback stops (pauses) at the last frame; resuming
    there starts again from the beginning.
    """

    live = False

    def __init__(
        self,
        recording: Recording,
        *,
        start_index: int | None = None,
        speed: float = 1.0,
        paused: bool = False,
        on_error: Callable[[RecordingError], None] | None = None,
        redact: bool = True,
    ) -> None:
        """`redact`: mask secrets in command lines, as the live screen does, even in a recording made without."""
        if not len(recording):
            raise RecordingError(f"{recording.path} has no frames")
        self.recording = recording
        self.interval_s = recording.meta.interval_s
        self.error: RecordingError | None = None
        # Called on the player thread when a frame cannot be shown.
        self.on_error = on_error
        self._redactor = FrameRedactor() if redact else None
        self._count = len(recording)
        self._first_wall_ns, self._last_wall_ns = recording.time_range
        self._cond = threading.Condition()
        # The first frame has no views (nothing to derive from): start on the
        # second so the screen fills at once.
        self._index = self._clamp(start_index if start_index is not None else 1)
        self._wall_ns = recording.timestamps(self._index)[0]
        self._target: int | None = self._index
        self._paused = paused
        self._speed = self._clamp_speed(speed)
        # When the frame on screen was due: the next one is due a recorded
        # gap later, so decoding time does not slow playback down.
        self._due_at = time.monotonic()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # controls

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        with self._cond:
            if not value and self._paused and self._target is None and self._index >= self._count - 1:
                self._target = self._clamp(1)
            self._paused = value
            self._due_at = time.monotonic()
            self._cond.notify()

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        with self._cond:
            self._speed = self._clamp_speed(value)
            self._cond.notify()

    def step(self, frames: int) -> None:
        """Move `frames` frames forward (or back, if negative) and pause there."""
        with self._cond:
            base = self._target if self._target is not None else self._index
            self._target = self._clamp(base + frames)
            self._paused = True
            self._cond.notify()

    def jump(self, seconds: float) -> None:
        """Move by `seconds` of recorded time (negative: back); keeps playing or paused."""
        with self._cond:
            base = self._target if self._target is not None else self._index
        wall_ns = self.recording.timestamps(base)[0] + int(seconds * 1e9)
        target = self.recording.index_at(wall_ns)
        # Frames further apart than `seconds`: still move one.
        if seconds > 0 and target <= base:
            target = base + 1
        elif seconds < 0 and target >= base:
            target = base - 1
        self.seek_index(target)

    def seek(self, wall_ns: int) -> None:
        """Show the frame at or before `wall_ns` (the first one, if earlier)."""
        self.seek_index(self.recording.index_at(wall_ns))

    def seek_index(self, index: int) -> None:
        with self._cond:
            self._target = self._clamp(index)
            self._cond.notify()

    def refresh(self) -> None:
        """Show the current frame again."""
        with self._cond:
            if self._target is None:
                self._target = self._index
            self._cond.notify()

    def position(self) -> ReplayPosition:
        with self._cond:
            return ReplayPosition(
                self._index, self._count, self._wall_ns, self._first_wall_ns, self._last_wall_ns,
                self._speed, self._paused,
            )

    # the Collector interface

    def start(self, on_frame: FrameCallback) -> None:
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="orac-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # the player thread

    def _clamp(self, index: int) -> int:
        return min(max(0, index), self._count - 1)

    @staticmethod
    def _clamp_speed(speed: float) -> float:
        return min(MAX_SPEED, max(MIN_SPEED, float(speed)))

    def _next(self) -> int | None:
        """Wait for the next frame to show; None when stopping."""
        with self._cond:
            while not self._stopping:
                if self._target is not None:
                    index, self._target = self._target, None
                    self._due_at = time.monotonic()
                    return index
                if self._paused:
                    self._cond.wait()
                    continue
                if self._index >= self._count - 1:
                    self._paused = True
                    continue
                delay = playback_delay_s(
                    self.recording.timestamps(self._index)[1], self.recording.timestamps(self._index + 1)[1],
                    self._speed, self.interval_s,
                )
                now = time.monotonic()
                left = self._due_at + delay - now
                if left <= 0:
                    # More than a second behind (a slow disk): carry on from
                    # now rather than rush through frames to catch up.
                    self._due_at = now if left < -MAX_LAG_S else self._due_at + delay
                    return self._index + 1
                # Woken early by a control, this loop looks again with the
                # new speed, target or pause state.
                self._cond.wait(left)
            return None

    def _shown(self, index: int) -> Frame:
        frame = self.recording.frame(index)
        return self._redactor.frame(frame) if self._redactor is not None else frame

    def _run(self, on_frame: FrameCallback) -> None:
        while True:
            try:
                index = self._next()
                if index is None:
                    return
                frame = self._shown(index)
                views = derive_frame(self._shown(index - 1), frame) if index > 0 else {}
            except Exception as exc:  # noqa: BLE001 - a damaged frame, or one no check foresaw
                # Stop where we are and say why, rather than end the thread
                # and leave the screen frozen.
                error = exc if isinstance(exc, RecordingError) else RecordingError(
                    f"{self.recording.path}: cannot show frame {index} ({type(exc).__name__}: {exc})"
                )
                with self._cond:
                    self.error = error
                    self._paused = True
                if self.on_error is not None:
                    self.on_error(error)
                continue
            with self._cond:
                self._index = index
                self._wall_ns = frame.wall_ns
            on_frame(frame, views)
