"""The flight recorder: the last minutes of frames, kept in memory as a recording keeps them.

The live screen hands it every frame (already redacted). Each is encoded
and compressed as the recording format stores it, a keyframe every
KEYFRAME_EVERY frames and deltas between, so ten minutes of a busy box take
a few MiB rather than the hundreds its Frame objects would. `R` then starts
a recording that begins where the kept minutes begin: the spike that made
someone press it is in the file.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import zstandard

from probes.contract import Unavailable
from probes.model.frame import Frame
from probes.store.codec import Decoder, Encoder, ProbeRow, Schema, TypeRow, TypeTable
from probes.store.format import RecordingMeta

# Faster than a recording file's level: this runs every tick in the live UI,
# and the bytes live only in memory for minutes.
ZSTD_LEVEL = 3
# Old frames go a keyframe group at a time (what is kept must start with a
# keyframe), so the window is this many frames longer at worst; a shorter
# group costs more keyframes' bytes.
KEYFRAME_EVERY = 60


@dataclass(frozen=True, slots=True)
class KeptFrame:
    """One frame as the flight recorder holds it."""

    seq: int  # counts every frame ever appended, from 1
    wall_ns: int
    mono_ns: int
    keyframe: bool
    data: bytes  # the zstd-compressed payload, as in a recording's frames table


class FlightRecorder:
    """The frames of the last `history_s` seconds, encoded and compressed.

    Frames older than that are dropped a keyframe group at a time, so what
    is kept always decodes from its first frame; the oldest kept frame is
    at most KEYFRAME_EVERY frames older than the window. One thread appends
    (the collector's); `frames_after` may be called from another while it
    does, on a snapshot.
    """

    def __init__(self, history_s: float, keyframe_every: int = KEYFRAME_EVERY) -> None:
        if history_s <= 0:
            raise ValueError(f"history_s must be positive, not {history_s}")
        self.history_s = history_s
        self._keyframe_every = max(1, keyframe_every)
        self._kept: deque[KeptFrame] = deque()
        self._bytes = 0
        self._types = TypeTable()
        self._encoder = Encoder(self._types)
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._type_rows: list[TypeRow] = []
        self._probe_rows: dict[str, ProbeRow] = {}
        self._prev: Frame | None = None
        self._since_keyframe = 0
        self.appended = 0

    def append(self, frame: Frame) -> None:
        prev = self._prev
        keyframe = prev is None or self._since_keyframe + 1 >= self._keyframe_every
        reference = None if prev is None or keyframe else (prev.samples, prev.unavailable)
        payload = self._encoder.encode_frame(frame.samples, frame.unavailable, reference)
        types, probes = self._types.unsaved()
        self._type_rows.extend(types)
        self._probe_rows.update((row.probe, row) for row in probes)
        self._types.mark_saved()
        self.appended += 1
        kept = KeptFrame(self.appended, frame.wall_ns, frame.mono_ns, keyframe, self._compressor.compress(payload))
        self._kept.append(kept)
        self._bytes += len(kept.data)
        self._prev = frame
        self._since_keyframe = 0 if keyframe else self._since_keyframe + 1
        self._trim(frame.mono_ns)

    def _trim(self, now_mono_ns: int) -> None:
        cutoff = now_mono_ns - int(self.history_s * 1e9)
        kept = self._kept
        # Drop a whole keyframe group once the next group starts at or before
        # the cutoff: the frames left still begin with a keyframe.
        while True:
            next_key = next((i for i, k in enumerate(islice(kept, 1, None), start=1) if k.keyframe), None)
            if next_key is None or kept[next_key].mono_ns > cutoff:
                return
            for _ in range(next_key):
                self._bytes -= len(kept.popleft().data)

    @property
    def keyframe_every(self) -> int:
        return self._keyframe_every

    @property
    def memory_bytes(self) -> int:
        """The compressed frames' bytes (what grows with the window)."""
        return self._bytes

    @property
    def first_wall_ns(self) -> int | None:
        return self._kept[0].wall_ns if self._kept else None

    @property
    def last_seq(self) -> int:
        return self._kept[-1].seq if self._kept else 0

    def __len__(self) -> int:
        return len(self._kept)

    def frames_after(self, seq: int) -> list[KeptFrame]:
        """The kept frames after frame `seq` (0: all of them), oldest first."""
        return [k for k in list(self._kept) if k.seq > seq]

    def schema(self) -> tuple[int, Schema]:
        """How many types are known, and the schema that decodes every frame appended so far."""
        types = list(self._type_rows)
        return len(types), Schema(types, list(self._probe_rows.values()))

    def type_count(self) -> int:
        return len(self._type_rows)


class FlightDecoder:
    """Turns a flight recorder's kept frames back into Frames, each against the one before it."""

    def __init__(self, recorder: FlightRecorder) -> None:
        self._recorder = recorder
        self._types, schema = recorder.schema()
        self._decoder = Decoder(schema)
        self._decompressor = zstandard.ZstdDecompressor()
        self._prev: Frame | None = None

    def decode(self, kept: list[KeptFrame]) -> Iterator[Frame]:
        """Frames of `kept`, which starts with a keyframe or continues the last call's frames."""
        if self._recorder.type_count() != self._types:
            # A probe started since (a drill-down's): its types join the schema.
            self._types, schema = self._recorder.schema()
            self._decoder = Decoder(schema)
        for k in kept:
            reference = None if k.keyframe or self._prev is None else (self._prev.samples, self._prev.unavailable)
            samples, unavailable = self._decoder.decode_frame(self._decompressor.decompress(k.data), reference)
            why = {name: Unavailable(*pair) for name, pair in unavailable.items()}
            frame = Frame(wall_ns=k.wall_ns, mono_ns=k.mono_ns, samples=samples, unavailable=why)
            self._prev = frame
            yield frame


class KeptRecording:
    """The frames a flight recorder held when this was made, read as a Recording is: the live screen's look back.

    What ReplaySource asks of a recording (len, time_range, timestamps,
    index_at, frame); the recorder goes on keeping new frames meanwhile,
    which this leaves out. A frame is decoded from the keyframe before it,
    or from the last frame read when that is the one before (stepping and
    playing forward decode one frame each).
    """

    path = Path("the kept minutes")
    warning: str | None = None

    def __init__(self, recorder: FlightRecorder, interval_s: float, redacted: bool) -> None:
        self._recorder = recorder
        self._kept = recorder.frames_after(0)
        self._walls = [k.wall_ns for k in self._kept]
        self.meta = RecordingMeta(
            host="", kernel="", orac_version="", interval_s=interval_s, probes=(), unavailable={},
            started_wall_ns=self._walls[0] if self._walls else 0, redacted=redacted,
            keyframe_every=recorder.keyframe_every,

        )
        self._decoder: FlightDecoder | None = None
        self._last: tuple[int, Frame] | None = None

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def time_range(self) -> tuple[int, int]:
        return self._walls[0], self._walls[-1]

    def timestamps(self, index: int) -> tuple[int, int]:
        k = self._kept[index]
        return k.wall_ns, k.mono_ns

    def index_at(self, wall_ns: int) -> int:
        """The last frame at or before `wall_ns`; 0 when it precedes them all."""
        return max(0, bisect.bisect_right(self._walls, wall_ns) - 1)

    def frame(self, index: int) -> Frame:
        last = self._last
        if last is not None and last[0] == index:
            return last[1]
        if last is not None and last[0] == index - 1 and self._decoder is not None and not self._kept[index].keyframe:
            start = index
        else:
            start = next(i for i in range(index, -1, -1) if self._kept[i].keyframe)
            self._decoder = FlightDecoder(self._recorder)
        *_, frame = self._decoder.decode(self._kept[start : index + 1])
        self._last = (index, frame)
        return frame
