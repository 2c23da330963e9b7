"""The recording format: frames stored in one SQLite file.

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
    names (see probes.store.codec).
``probes(name TEXT PRIMARY KEY, type TEXT, version INTEGER, crc)``
    Each recorded probe's sample type and schema version.

    The `crc` of these three tables is the CRC-32 of the row's other values
    as text joined by NUL bytes, in column order.
``frames(id INTEGER PRIMARY KEY, wall_ns, mono_ns, base, data BLOB, crc)``
    Frame N of the recording (0-based) has id N+1. `data` is a zstd frame
    holding the probes.store.codec payload; `base` is the id of the keyframe the
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

import dataclasses
import json
import struct
import zlib
from collections.abc import Mapping

from probes.contract import Unavailable

FORMAT = "orac recording"
FORMAT_VERSION = 1
APPLICATION_ID = 0x6F726163  # "orac"
SQLITE_MAGIC = b"SQLite format 3\x00"



# Longer than any lock a healthy writer holds (one small transaction), short
# enough that a stuck lock gives the user an error rather than a hang.
BUSY_TIMEOUT_S = 2.0



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
    # Only a recorder asks: importlib.metadata costs every live screen a MiB otherwise.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orac")
    except PackageNotFoundError:
        return "unknown"


def _crc(frame_id: int, wall_ns: int, mono_ns: int, base: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_ROW_HEADER.pack(frame_id, wall_ns, mono_ns, base)))



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
    unavailable: dict[str, Unavailable]
    started_wall_ns: int
    redacted: bool
    keyframe_every: int


def _unavailable_json(unavailable: Mapping[str, Unavailable]) -> str:
    return json.dumps({name: {"reason": r, "remedy": f} for name, (r, f) in unavailable.items()})
