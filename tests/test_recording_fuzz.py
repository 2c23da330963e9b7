"""Damaged and crafted recordings: `orac dump` and `orac replay` give one line, never a traceback or a hang.

A fixed seed picks a few hundred cases from a real recording of the
synthetic box (every probe the drill-down records): truncations, bit flips,
zeroed pages, SQLite-level tampering done with the sqlite3 module (column
types, deleted rows, swapped blobs, absurd times, checksums recomputed to
match), frames whose samples hold wrong types and values that a file can
carry with valid checksums, damaged metadata, and files that are not
regular files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import random
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.synthetic_threads import drill_frames

from probes.model.frame import Frame
from probes.store import writer
from probes.store.format import _crc, _row_crc
from probes.store.writer import Recorder
from tui import cli

SEED = 20261201
CASE_TIMEOUT_S = 10
FRAMES = 12


def base_frames() -> list[Frame]:
    pair = drill_frames()
    return [
        dataclasses.replace(pair[t % 2], wall_ns=pair[0].wall_ns + t * 10**9, mono_ns=pair[0].mono_ns + t * 10**9)
        for t in range(FRAMES)
    ]


def write_recording(path: Path, frames: list[Frame]) -> Path:
    with Recorder(path, interval_s=1.0, probes=list(frames[0].samples), keyframe_every=4, redact=False) as rec:
        for frame in frames:
            rec.append(frame)
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recording(tmp_path_factory.mktemp("fuzz") / "base.orac", base_frames())


class Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise Timeout(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_dump(path: Path, *options: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with time_limit(CASE_TIMEOUT_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["dump", str(path), *options])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_answer(path: Path, case: str) -> None:
    """Either a dump, or one line saying what is wrong with exit status 2."""
    for options in ((), ("--format", "csv", "--table", "system")):
        code, _, err = run_dump(path, *options)
        assert code in (0, 2), f"{case}: exit status {code}"
        if code == 2:
            assert err.startswith("orac: error: ") and err.count("\n") == 1, f"{case}: {err!r}"
            assert "Traceback" not in err, case


# --- the cases ---------------------------------------------------------------------


def truncate(rng: random.Random, path: Path) -> str:
    size = path.stat().st_size
    at = rng.randrange(0, size)
    os.truncate(path, at)
    return f"truncated at {at} of {size}"


def flip_bits(rng: random.Random, path: Path) -> str:
    data = bytearray(path.read_bytes())
    positions = [rng.randrange(len(data)) for _ in range(rng.choice((1, 1, 2, 8)))]
    for pos in positions:
        data[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(data)
    return f"bits flipped at {positions}"


def zero_page(rng: random.Random, path: Path) -> str:
    data = bytearray(path.read_bytes())
    page = rng.randrange(len(data) // 4096)
    data[page * 4096 : (page + 1) * 4096] = bytes(4096)
    path.write_bytes(data)
    return f"page {page} zeroed"


def tamper(sql: str, *args: Any) -> Callable[[random.Random, Path], str]:
    def apply(rng: random.Random, path: Path) -> str:
        frame_id = rng.randrange(1, FRAMES + 1)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(sql.format(id=frame_id), args)
            db.commit()
        return sql.format(id=frame_id)

    apply.__name__ = "sql"
    return apply


def retype_column(column: str, affinity: str) -> Callable[[random.Random, Path], str]:
    """Rebuild the frames table with one column of another type (values cast to it)."""

    def apply(rng: random.Random, path: Path) -> str:
        columns = ["id", "wall_ns", "mono_ns", "base", "data", "crc"]
        select = ", ".join(f"CAST({c} AS {affinity}) AS {c}" if c == column else c for c in columns)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.executescript(
                f"CREATE TABLE f2 AS SELECT {select} FROM frames; DROP TABLE frames; ALTER TABLE f2 RENAME TO frames;"
            )
        return f"frames.{column} as {affinity}"

    apply.__name__ = "retype"
    return apply


def swap_blobs(rng: random.Random, path: Path) -> str:
    a, b = rng.sample(range(1, FRAMES + 1), 2)
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = {i: db.execute("SELECT data FROM frames WHERE id = ?", (i,)).fetchone()[0] for i in (a, b)}
        db.execute("UPDATE frames SET data = ? WHERE id = ?", (rows[b], a))
        db.execute("UPDATE frames SET data = ? WHERE id = ?", (rows[a], b))
        if rng.random() < 0.5:
            for i in (a, b):
                wall, mono, base, data = db.execute("SELECT wall_ns, mono_ns, base, data FROM frames WHERE id = ?", (i,)).fetchone()
                db.execute("UPDATE frames SET crc = ? WHERE id = ?", (_crc(i, wall, mono, base, data), i))
        db.commit()
    return f"frames {a} and {b} swapped"


ABSURD_TIMES = (-1, 0, 2**63 - 1, -(2**63), 10**18 * 9, 1)


def absurd_time(rng: random.Random, path: Path) -> str:
    """A frame's times changed, its checksum recomputed so that only the times are wrong."""
    frame_id = rng.randrange(1, FRAMES + 1)
    column = rng.choice(("wall_ns", "mono_ns"))
    value = rng.choice(ABSURD_TIMES)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"UPDATE frames SET {column} = ? WHERE id = ?", (value, frame_id))
        wall, mono, base, data = db.execute(
            "SELECT wall_ns, mono_ns, base, data FROM frames WHERE id = ?", (frame_id,)
        ).fetchone()
        db.execute("UPDATE frames SET crc = ? WHERE id = ?", (_crc(frame_id, wall, mono, base, data), frame_id))
        db.commit()
    return f"frame {frame_id} {column} = {value}"


BAD_META = {
    "unavailable": ["[]", "{}", '{"x": 1}', '{"x": {"reason": 1}}', "null", "nope"],
    "interval_s": ["nan", "inf", "-1", "0", "1e400", "x", ""],
    "probes": ["{}", "1", '[1, 2]', "nope"],
    "keyframe_every": ["0", "-5", "x", "1e9"],
    "started_wall_ns": ["x", "-1", "1e30", str(2**70)],
    "redacted": ["maybe"],
    "host": [""],
}


def bad_meta(rng: random.Random, path: Path) -> str:
    key = rng.choice(sorted(BAD_META))
    value = rng.choice(BAD_META[key])
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE meta SET value = ?, crc = ? WHERE key = ?", (value, _row_crc(key, value), key))
        db.commit()
    return f"meta {key} = {value!r}"


HOSTILE_VALUES: tuple[Any, ...] = (
    2**2000, -1, -(2**70), 2**64, float("nan"), float("inf"), -1.5, "x", "", None, True, 7, 3.5, b"\xff",
    (), (1, 2, 3), ("a",), {}, {"k": "v"}, [1],
)


def crafted_sample(rng: random.Random, path: Path) -> str:
    """A frame written by a real Recorder (valid checksums) whose sample holds a wrong value somewhere."""
    frames = base_frames()
    index = rng.randrange(1, FRAMES)
    frame = frames[index]
    probe = rng.choice(sorted(frame.samples))
    where, sample = replace_somewhere(rng, frame.samples[probe], rng.choice(HOSTILE_VALUES))
    frames[index] = dataclasses.replace(frame, samples={**frame.samples, probe: sample})
    path.unlink()
    write_recording(path, frames)
    return f"frame {index} {probe}{where}"


def replace_somewhere(rng: random.Random, value: Any, hostile: Any) -> tuple[str, Any]:
    """`value` with one field somewhere inside it replaced by `hostile`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and rng.random() < 0.8:
        field = rng.choice(dataclasses.fields(value))
        where, inner = replace_somewhere(rng, getattr(value, field.name), hostile)
        return f".{field.name}{where}", dataclasses.replace(value, **{field.name: inner})
    if type(value) is tuple and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        where, inner = replace_somewhere(rng, value[i], hostile)
        return f"[{i}]{where}", (*value[:i], inner, *value[i + 1 :])
    if type(value) is dict and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        where, inner = replace_somewhere(rng, value[key], hostile)
        return f"[{key!r}]{where}", {**value, key: inner}
    return f" = {hostile!r}"[:60], hostile


def crafted_unavailable(rng: random.Random, path: Path) -> str:
    frames = base_frames()
    index = rng.randrange(FRAMES)
    bad = rng.choice((("only reason",), ("a", "b", "c"), (1, 2), "text", None, ("a", None)))
    frame = frames[index]
    # A hostile writer is not held to Frame's own conversion of reasons.
    object.__setattr__(frame, "unavailable", {"gpu": bad})
    path.unlink()
    # The writer's own metadata would choke on it first: only the frame carries it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "_unavailable_json", lambda unavailable: "{}")
        write_recording(path, frames)
    return f"frame {index} unavailable = {bad!r}"


MUTATIONS: list[tuple[Callable[[random.Random, Path], str], int]] = [
    (truncate, 25),
    (flip_bits, 60),
    (zero_page, 20),
    (tamper("UPDATE frames SET mono_ns = 'abc' WHERE id = {id}"), 4),
    (tamper("UPDATE frames SET base = 'x' WHERE id = {id}"), 4),
    (tamper("UPDATE frames SET wall_ns = 1.5 WHERE id = {id}"), 3),
    (tamper("UPDATE frames SET data = 'text' WHERE id = {id}"), 3),
    (tamper("UPDATE frames SET crc = 'x' WHERE id = {id}"), 3),
    (tamper("UPDATE frames SET base = 0 WHERE id = {id}"), 3),
    (tamper("DELETE FROM frames WHERE id = {id}"), 4),
    (tamper("DELETE FROM types"), 2),
    (tamper("DELETE FROM probes"), 2),
    (tamper("DELETE FROM meta WHERE key = 'interval_s'"), 2),
    (tamper("UPDATE types SET fields = '[]'"), 2),
    (tamper("PRAGMA user_version = 99999"), 1),
    (retype_column("mono_ns", "TEXT"), 2),
    (retype_column("wall_ns", "REAL"), 2),
    (retype_column("data", "TEXT"), 2),
    (retype_column("base", "TEXT"), 2),
    (swap_blobs, 10),
    (absurd_time, 24),
    (bad_meta, 30),
    (crafted_sample, 110),
    (crafted_unavailable, 10),
]


def cases() -> list[tuple[str, Callable[[random.Random, Path], str], int]]:
    out = []
    for n, (mutate, count) in enumerate(MUTATIONS):
        out.extend((f"{mutate.__name__}-{n}-{i}", mutate, i) for i in range(count))
    return out


def test_every_damaged_or_crafted_recording_gets_a_one_line_answer(pristine: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    failures = []
    for name, mutate, _ in cases():
        path = tmp_path / f"{name}.orac"
        shutil.copyfile(pristine, path)
        case = f"{name}: {mutate(rng, path)}"
        try:
            assert_one_line_answer(path, case)
        except (AssertionError, Timeout) as exc:
            failures.append(f"{case}: {exc}")
        except Exception as exc:
            failures.append(f"{case}: {type(exc).__name__}: {exc}")
        for leftover in tmp_path.glob(f"{name}.orac*"):
            leftover.unlink()
    assert not failures, f"{len(failures)} cases failed:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "link to a fifo"])
def test_a_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "f.orac"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/null")
    else:
        os.mkfifo(tmp_path / "fifo")
        path.symlink_to(tmp_path / "fifo")
    code, out, err = run_dump(path)
    assert code == 2 and out == ""
    assert err.startswith("orac: error: ") and ("not a regular file" in err or "is a directory" in err)
    assert err.count("\n") == 1


# --- replay ------------------------------------------------------------------------

EXTREME_VALUES: tuple[Any, ...] = (
    0, 2**64 - 1, 2**63, 1.8e19, 0.0, 1e-300, "", "x" * 3000, "[b]not markup[/b]", "\x1b[31m\x07", "日本語\u202e",
)


def extreme_sample(rng: random.Random, path: Path) -> str:
    """Values a well-formed recording may hold at their limits: the screen must draw them."""
    frames = base_frames()
    changed = []
    for index in range(1, FRAMES):
        frame = frames[index]
        probe = rng.choice(sorted(frame.samples))
        sample = frame.samples[probe]
        for _ in range(8):
            hostile = rng.choice(EXTREME_VALUES)
            where, candidate = replace_somewhere(rng, sample, hostile)
            if fits(frame.samples[probe], candidate):
                sample = candidate
                changed.append(f"{index} {probe}{where}")
        frames[index] = dataclasses.replace(frame, samples={**frame.samples, probe: sample})
    path.unlink()
    write_recording(path, frames)
    return "; ".join(changed)[:200]


def fits(before: Any, after: Any) -> bool:
    """Whether `after` passes the reader's checks (so it reaches the screen)."""
    from probes.store.codec import CodecError
    from probes.store.validation import SampleValidator

    try:
        SampleValidator({"x": type(before)}).check({"x": after}, {})
    except CodecError:
        return False
    return True


REPLAY_CASES = 12


async def test_replay_of_damaged_or_extreme_recordings_says_why_on_screen_and_never_crashes(
    pristine: Path, tmp_path: Path
) -> None:
    """Every frame is drawn in turn (stepped to, not played, so none is skipped)."""
    from probes.store.format import RecordingError
    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from tui.app import OracApp
    from tui.replay_bar import ReplayBar

    rng = random.Random(SEED + 1)
    stopped = 0
    for n in range(REPLAY_CASES):
        mutate = rng.choice((flip_bits, crafted_sample, swap_blobs, extreme_sample, extreme_sample))
        path = tmp_path / f"replay-{n}.orac"
        shutil.copyfile(pristine, path)
        case = f"{n}: {mutate.__name__}: {mutate(rng, path)}"
        try:
            recording = Recording(path)
            source = ReplaySource(recording, paused=True)
        except RecordingError:
            continue  # refused at open with one line: the dump test covers that
        with recording:
            app = OracApp(source)
            async with app.run_test(size=(160, 48)) as pilot:
                for index in range(1, len(recording)):
                    source.seek_index(index)
                    for _ in range(200):
                        await pilot.pause(0.01)
                        if source.error is not None or source.position().index == index:
                            break
                    if source.error is not None:
                        break
                    await pilot.pause()
                if source.error is not None:
                    stopped += 1
                    await pilot.pause(0.05)
                    bar = app.query_one(ReplayBar)
                    assert bar.error == str(source.error), case
                    assert "REPLAY STOPPED" in str(bar.render()), case
                else:
                    assert source.position().index == len(recording) - 1, f"{case}: replay stuck"
    assert stopped >= 3, "too few cases reached a damaged frame to test what the screen says"


def test_a_name_cut_inside_markup_is_drawn_as_it_is() -> None:
    """Found by the replay cases: a process named "[b]x[/b]" cut to the histogram's column closed the wrong tag."""
    from rich.markup import render

    from tui.histogram import histogram_lines

    text = histogram_lines([("[b]not markup[/b]", (0, 3, 1), "$primary")], 30, "wait ≥", "none")
    assert "[b]not mar" in render(text.replace("$primary", "blue").replace("$foreground-muted", "grey50")).plain
