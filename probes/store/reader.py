"""Reading a recording: `Recording` opens a file read-only and decodes its frames, trusting nothing in it."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import zstandard

import probes.registry  # noqa: F401 - registers the names recordings give sample types
from probes.contract import Unavailable
from probes.model.collector import (
    MAX_INTERVAL_S,
)
from probes.model.frame import Frame
from probes.store.codec import (
    CodecError,
    Decoder,
    ProbeRow,
    Schema,
    TypeRow,
    resolve_type,
)
from probes.store.format import (
    APPLICATION_ID,
    BUSY_TIMEOUT_S,
    FORMAT,
    FORMAT_VERSION,
    META_KEYS,
    SQLITE_MAGIC,
    RecordingError,
    RecordingMeta,
    _crc,
    _row_crc,
)
from probes.store.validation import SampleValidator
from probes.store.writer import CHECKPOINT_EVERY

# The header byte SQLite sets to 2 for a database in WAL mode.
WAL_HEADER_OFFSET = 18



# A frame's payload is tens of KB even at thousands of processes; a damaged
# header claiming more must not make the reader allocate it.
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
CACHE_FRAMES = 256



def _time_ok(value: object) -> bool:
    """A frame's wall_ns or mono_ns: an int from 0 (the epoch, or boot) to 2**63."""
    return type(value) is int and 0 <= value < 2**63


def _frame_row_ok(frame_id: object, wall_ns: object, mono_ns: object, base: object, data: object, crc: object) -> bool:
    """The types and ranges a frames row must have before its checksum can even be computed."""
    return (
        _time_ok(wall_ns) and _time_ok(mono_ns) and type(base) is int and 0 < base < 2**63
        and type(data) is bytes and type(crc) is int and 0 <= crc < 2**32 and type(frame_id) is int
    )



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
            unavailable={name: Unavailable(entry["reason"], entry["remedy"]) for name, entry in unavailable.items()},
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
            reference: tuple[Mapping[str, Any], Mapping[str, Unavailable]] | None = None
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
            why = {name: Unavailable(*pair) for name, pair in unavailable.items()}
            frame = Frame(wall_ns=wall_ns, mono_ns=mono_ns, samples=samples, unavailable=why)
            yield index, frame
            prev = frame

    def _remember(self, index: int, frame: Frame) -> None:
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
