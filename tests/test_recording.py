"""Recordings: the codec, the SQLite store, bad files, kill -9, replay and dump."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import cannot_run
from support.recordings import START_WALL_NS, synthetic_frames, write
from support.synthetic import PROCESSES, S, processes_sample

from probes.contract import Probe, Unavailable
from probes.model.frame import Frame
from probes.model.redaction import redact_cmdline
from probes.model.sampling import Sampler
from probes.model.views import derive_frame
from probes.registry import all_probes, select_probes
from probes.sources.processes import ProcessesSample, ProcSample
from probes.sources.syscalls import SyscallProbe
from probes.store.codec import (
    CodecError,
    Decoder,
    Encoder,
    ProbeRow,
    Schema,
    TypeRow,
    TypeTable,
    register_type,
)
from probes.store.dump import dump
from probes.store.format import RecordingError, _row_crc
from probes.store.headless import RecordStats, record
from probes.store.playback import parse_time
from probes.store.reader import Recording
from probes.store.replay import ReplaySource, playback_delay_s
from probes.store.writer import Recorder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return synthetic_frames(40)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, frames: list[Frame]) -> Path:
    # A short keyframe period, so reads cross keyframes and decode chains.
    return write(tmp_path_factory.mktemp("rec") / "session.orac", frames, keyframe_every=7, redact=False,
                 probes=["cpu", "procs", "offcpu"], host="db-7", kernel="6.1.0-test")


# --- codec ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Everything:
    """Every kind of value a sample may hold."""

    flag: bool
    count: int
    ratio: float
    name: str
    raw: bytes
    maybe: int | None
    items: tuple[int, ...]
    listed: list[str]
    table: dict[str, Everything | None]
    child: Everything | None = None


register_type(Everything, "tests:Everything")


def everything(seed: int) -> Everything:
    leaf = Everything(seed % 2 == 0, -seed, -0.0, "é" * (seed % 3), b"\x00\xff", None, (), [], {})
    return Everything(
        flag=True,
        count=2**70 + seed,
        ratio=math.pi * seed,
        name=f"name {seed}",
        raw=bytes(range(seed % 7)),
        maybe=seed if seed % 2 else None,
        items=tuple(range(seed % 5)),
        listed=["a", "b"][: seed % 3],
        table={"x": leaf, "y": None} if seed % 2 else {"y": leaf},
        child=leaf,
    )


def round_trip(values: list[tuple[dict[str, Any], dict[str, tuple[str, str]]]], keyframe_every: int) -> list[Any]:
    table = TypeTable()
    encoder = Encoder(table)
    payloads = []
    for i, (samples, unavailable) in enumerate(values):
        reference = None if i % keyframe_every == 0 else values[i - 1]
        payloads.append(encoder.encode_frame(samples, unavailable, reference))
    decoder = Decoder(Schema(*table.unsaved()))
    decoded: list[Any] = []
    for i, payload in enumerate(payloads):
        reference = None if i % keyframe_every == 0 else decoded[i - 1]
        decoded.append(decoder.decode_frame(payload, reference))
    return decoded


def test_codec_round_trips_every_kind_of_value_exactly() -> None:
    values = [({"all": everything(seed), "n": seed}, {"gpu": ("no NVML", "install the driver")}) for seed in range(12)]
    decoded = round_trip(values, keyframe_every=5)
    assert decoded == values
    for samples, _ in decoded:
        # equal is not enough: bool stays bool, -0.0 keeps its sign
        assert type(samples["all"].flag) is bool
        assert math.copysign(1.0, samples["all"].child.ratio) == -1.0
        assert type(samples["all"].listed) is list and type(samples["all"].items) is tuple


def test_codec_round_trips_synthetic_frames(frames: list[Frame]) -> None:
    values = [(dict(f.samples), dict(f.unavailable)) for f in frames]
    assert round_trip(values, keyframe_every=10) == values


def test_codec_keeps_a_changed_type_of_equal_value() -> None:
    values: list[tuple[dict[str, Any], dict[str, tuple[str, str]]]] = [({"v": (1, 0.0)}, {}), ({"v": (True, -0.0)}, {})]
    decoded = round_trip(values, keyframe_every=10)
    assert type(decoded[1][0]["v"][0]) is bool
    assert math.copysign(1.0, decoded[1][0]["v"][1]) == -1.0


def test_an_unchanged_frame_costs_a_few_bytes(frames: list[Frame]) -> None:
    encoder = Encoder(TypeTable())
    frame = frames[0]
    full = encoder.encode_frame(frame.samples, frame.unavailable, None)
    same = encoder.encode_frame(frame.samples, frame.unavailable, (frame.samples, frame.unavailable))
    assert len(full) > 1000
    assert len(same) <= 4


def test_codec_refuses_what_it_cannot_store() -> None:
    @dataclasses.dataclass(frozen=True)
    class Local:
        x: int

    encoder = Encoder(TypeTable())
    with pytest.raises(CodecError, match="outside the probes package"):
        encoder.encode_frame({"p": Local(1)}, {}, None)
    with pytest.raises(CodecError, match="cannot record a value of type set"):
        encoder.encode_frame({"p": {1, 2}}, {}, None)


def test_schema_refuses_an_unknown_probe() -> None:
    with pytest.raises(CodecError) as exc:
        Schema([TypeRow(0, "probes.quantum:QubitSample", ("qubits",))],
               [ProbeRow("quantum", "probes.quantum:QubitSample", 1)])
    assert str(exc.value) == (
        "it has probe 'quantum' (probes.quantum:QubitSample), which this orac does not know; upgrade orac"
    )


def test_schema_never_imports_outside_probes() -> None:
    with pytest.raises(CodecError, match="does not know"):
        Schema([TypeRow(0, "os:system", ())], [])


def test_schema_refuses_a_newer_probe_version() -> None:
    with pytest.raises(CodecError, match="schema version 2 from a newer orac"):
        Schema([], [ProbeRow("procs", "probes.processes:ProcessesSample", 2)])


@dataclasses.dataclass(frozen=True, slots=True)
class Grown:
    SCHEMA_VERSION: ClassVar[int] = 2
    a: int
    b: str = "default"


register_type(Grown, "tests:Grown")


def test_schema_reads_an_older_layout_by_field_name() -> None:
    old = Schema([TypeRow(0, "tests:Grown", ("a",))], [ProbeRow("p", "tests:Grown", 1)])
    decoder = Decoder(old)
    # a keyframe holding Grown(a=5) as the old layout wrote it: DATACLASS, id 0, INT 5
    samples, _ = decoder.decode_frame(bytes([0x07, 2, 0x09, 1, 0x05, 1]) + b"p" + bytes([0x0A, 0, 0x03, 10, 0x09, 0]),
                                      None)
    assert samples == {"p": Grown(5)}
    with pytest.raises(CodecError, match="recorded with field 'gone', which this orac does not have"):
        Schema([TypeRow(0, "tests:Grown", ("a", "gone"))], [])


# --- store ------------------------------------------------------------------------


def test_synthetic_frames_read_back_equal(recorded: Path, frames: list[Frame]) -> None:
    with Recording(recorded) as recording:
        assert len(recording) == len(frames)
        # in order, backwards and scattered: each crosses keyframes differently
        assert [recording.frame(i) for i in range(len(frames))] == frames
    with Recording(recorded) as recording:
        assert [recording.frame(i) for i in reversed(range(len(frames)))] == frames[::-1]
    with Recording(recorded, cache_frames=2) as recording:
        for i in (17, 3, 39, 0, 21, 20, 22, 6, 7, 8):
            assert recording.frame(i) == frames[i]
        assert [f for _, f in recording.iter_frames(range(5, 30))] == frames[5:30]
        assert [i for i, _ in recording.iter_frames()] == list(range(len(frames)))


def sample_real(probes: list[Probe[Any]], count: int) -> tuple[list[Frame], dict[str, Unavailable]]:
    with Sampler(probes) as sampler:
        real = []
        for _ in range(count):
            real.append(sampler.sample())
            time.sleep(0.05)
    return real, sampler.unavailable


def test_real_frames_read_back_equal(tmp_path: Path) -> None:
    real, _ = sample_real(select_probes(["cpu", "procs"], all_probes()), 3)
    assert len(real[-1].samples["procs"].processes) > 1
    with Recording(write(tmp_path / "real.orac", real, redact=False)) as recording:
        assert [recording.frame(i) for i in range(len(recording))] == real


@pytest.mark.root
def test_real_ebpf_frames_read_back_equal(tmp_path: Path) -> None:
    real, unavailable = sample_real([SyscallProbe()], 4)
    if "syscalls" in unavailable:
        cannot_run(f"eBPF cannot run here: {unavailable['syscalls'][0]}")
    assert any(frame.samples["syscalls"].syscalls for frame in real)
    with Recording(write(tmp_path / "ebpf.orac", real, redact=False, keyframe_every=2)) as recording:
        assert [recording.frame(i) for i in range(len(recording))] == real


def test_metadata(recorded: Path, frames: list[Frame]) -> None:
    with Recording(recorded) as recording:
        meta = recording.meta
        assert (meta.host, meta.kernel, meta.interval_s) == ("db-7", "6.1.0-test", 1.0)
        assert meta.probes == ("cpu", "procs", "offcpu")
        # learnt from the frames: offcpu became unavailable half way
        assert meta.unavailable == {"offcpu": ("no root", "run `sudo orac`")}
        assert meta.orac_version != ""
        assert meta.redacted is False
        assert abs(meta.started_wall_ns - time.time_ns()) < 600 * S
        assert recording.time_range == (frames[0].wall_ns, frames[-1].wall_ns)


def test_metadata_defaults_to_this_machine(tmp_path: Path, frames: list[Frame]) -> None:
    path = write(tmp_path / "x.orac", frames[:2], unavailable={"gpu": ("no NVIDIA GPU", "")}, probes=["cpu"])
    with Recording(path) as recording:
        assert recording.meta.host == os.uname().nodename
        assert recording.meta.kernel == os.uname().release
        assert recording.meta.redacted is True
        assert recording.meta.unavailable == {"gpu": ("no NVIDIA GPU", "")}


def test_files_are_private_and_end_as_one_file(tmp_path: Path, frames: list[Frame]) -> None:
    path = tmp_path / "private.orac"
    old_umask = os.umask(0)  # the most permissive umask still gives 0600
    try:
        recorder = Recorder(path, interval_s=1.0)
        recorder.append(frames[0])
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert name.stat().st_mode & 0o777 == 0o600, name
        recorder.close()
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.orac"]
    assert recorder.append(frames[1]) is False  # after close: ignored


def test_an_existing_file_is_kept_unless_overwriting(tmp_path: Path, frames: list[Frame]) -> None:
    path = tmp_path / "exists.orac"
    path.write_text("precious")
    with pytest.raises(RecordingError, match="already exists"):
        Recorder(path, interval_s=1.0)
    assert path.read_text() == "precious"
    # a stale -wal of the old file must not be replayed into the new one
    Path(f"{path}-wal").write_bytes(b"stale")
    write(path, frames[:3], overwrite=True)
    with Recording(path) as recording:
        assert len(recording) == 3


# --- redaction --------------------------------------------------------------------

REDACTIONS = [
    ("mysql -u root -phunter2 db", "mysql -u root -p*** db"),
    ("/usr/bin/mysqldump --password=hunter2 db", "/usr/bin/mysqldump --password=*** db"),
    ("psql postgres://bob:s3cret@db.internal/app", "psql postgres://bob:***@db.internal/app"),
    ("redis-cli -u redis://:pw@cache:6379/0", "redis-cli -u redis://:***@cache:6379/0"),
    ("app --password hunter2 --verbose", "app --password *** --verbose"),
    ("app --db-password=hunter2", "app --db-password=***"),
    ("app --token abc123", "app --token ***"),
    ("app --api-key abc123", "app --api-key ***"),
    ("app --key abc123", "app --key ***"),
    ("vault login -token=hvs.abc", "vault login -token=***"),
    ("env AWS_SECRET_ACCESS_KEY=wJalr/K7MDENG aws s3 ls", "env AWS_SECRET_ACCESS_KEY=*** aws s3 ls"),
    ("PGPASSWORD=x psql", "PGPASSWORD=*** psql"),
    ("app client_secret=abc api_key=def apikey=ghi secret=jkl",
     "app client_secret=*** api_key=*** apikey=*** secret=***"),
    ("wget https://api/x?access_token=abc&page=2", "wget https://api/x?access_token=***&page=2"),
    ("curl -H Authorization: Bearer abc.def https://x", "curl -H Authorization: Bearer *** https://x"),
    ("curl -u bob:pw https://x", "curl -u bob:*** https://x"),
    ("sshpass -p pw ssh host", "sshpass -p *** ssh host"),
    ("java -Djavax.net.ssl.keyStorePassword=changeit -jar x.jar",
     "java -Djavax.net.ssl.keyStorePassword=*** -jar x.jar"),
    ("git push https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r",
     "git push https://***@github.com/o/r"),
]
KEPT = [
    "ssh -p 2222 host",
    "docker run -p 8080:80 nginx",
    "mysql -p db",  # prompts; "db" is the database
    "python3 train.py --epochs 10 tokenizer=bert",
    "app --password-file /etc/app/pw",
    "app --password --verbose",  # prompts
    "curl https://example.com:8443/path",
    "sshd: /usr/sbin/sshd -D",
    "",
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_redact_cmdline(text: str, expected: str) -> None:
    assert redact_cmdline(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_redact_cmdline_keeps_what_is_not_secret(text: str) -> None:
    assert redact_cmdline(text) == text


def frames_with_cmdline(cmdline: str) -> list[Frame]:
    procs = [*PROCESSES, (7000, 1, "bob", "S", "mysql", cmdline, "/", 0, 10, 1, 1.0)]
    return [dataclasses.replace(f, samples={**f.samples, "procs": processes_sample(t, procs)})
            for t, f in enumerate(synthetic_frames(3))]


def stored_cmdlines(path: Path) -> set[str]:
    with Recording(path) as recording:
        return {p.cmdline for _, f in recording.iter_frames() for p in f.samples["procs"].processes if p.pid == 7000}


def test_recording_redacts_command_lines_by_default(tmp_path: Path) -> None:
    frames = frames_with_cmdline("mysql -u root -phunter2 shop")
    redacted = write(tmp_path / "redacted.orac", frames)
    assert stored_cmdlines(redacted) == {"mysql -u root -p*** shop"}
    assert b"hunter2" not in redacted.read_bytes()
    kept = write(tmp_path / "kept.orac", frames, redact=False)
    assert stored_cmdlines(kept) == {"mysql -u root -phunter2 shop"}


# --- bad files --------------------------------------------------------------------


def assert_one_line_error(path: Path, read_all: bool = True) -> RecordingError:
    """Opening (and reading every frame of) `path` fails with one line naming the file."""
    with pytest.raises(RecordingError) as exc:
        with Recording(path) as recording:
            if read_all:
                for _ in recording.iter_frames():
                    pass
    message = str(exc.value)
    assert "\n" not in message and str(path) in message, message
    return exc.value


def test_missing_empty_directory_and_text_files(tmp_path: Path) -> None:
    assert "no such file" in str(assert_one_line_error(tmp_path / "missing.orac"))
    empty = tmp_path / "empty.orac"
    empty.touch()
    assert "is empty" in str(assert_one_line_error(empty))
    assert "directory" in str(assert_one_line_error(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("not a recording\n" * 20)
    assert str(assert_one_line_error(text)) == f"{text} is not an orac recording"


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE frames (x)")
    db.close()
    assert "some other SQLite database" in str(assert_one_line_error(foreign))
    # our application id but none of our tables
    lookalike = tmp_path / "lookalike.db"
    with sqlite3.connect(lookalike) as db:
        db.execute("PRAGMA application_id = 1869767011")
        db.execute("CREATE TABLE t (x)")
    db.close()
    assert "is not an orac recording" in str(assert_one_line_error(lookalike))
    # and with our header, but without our tables
    tableless = copy_and_edit(lookalike, tmp_path / "tableless.db", "PRAGMA user_version = 1", checksums=False)
    assert "no orac tables" in str(assert_one_line_error(tableless))


def copy_and_edit(source: Path, target: Path, *statements: str, checksums: bool = True) -> Path:
    """A copy of `source` changed by SQL; with `checksums`, the small tables'
    checksums are brought up to date, as a newer orac would have written them."""
    target.write_bytes(source.read_bytes())
    db = sqlite3.connect(target)
    db.create_function("row_crc", -1, _row_crc)
    for statement in statements:
        db.execute(statement)
    if checksums:
        db.execute("UPDATE meta SET crc = row_crc(key, value)")
        db.execute("UPDATE types SET crc = row_crc(id, name, fields)")
        db.execute("UPDATE probes SET crc = row_crc(name, type, version)")
    db.commit()
    db.close()
    return target


def test_newer_formats_and_unknown_probes(recorded: Path, tmp_path: Path) -> None:
    newer = copy_and_edit(recorded, tmp_path / "newer.orac", "PRAGMA user_version = 2")
    assert "written by a newer orac (recording format 2" in str(assert_one_line_error(newer))
    newer_probe = copy_and_edit(recorded, tmp_path / "probe.orac", "UPDATE probes SET version = 9 WHERE name = 'procs'")
    assert "probe 'procs' at schema version 9 from a newer orac" in str(assert_one_line_error(newer_probe))
    unknown = copy_and_edit(
        recorded, tmp_path / "unknown.orac",
        "UPDATE types SET name = 'probes.quantum:QubitSample' WHERE name = 'probes.processes:ProcessesSample'",
        "UPDATE probes SET type = 'probes.quantum:QubitSample' WHERE name = 'procs'",
    )
    message = str(assert_one_line_error(unknown))
    assert "probe 'procs' (probes.quantum:QubitSample), which this orac does not know" in message


def test_edited_metadata_is_reported(recorded: Path, tmp_path: Path) -> None:
    edited = copy_and_edit(recorded, tmp_path / "edited.orac", "UPDATE meta SET value = 'db-8' WHERE key = 'host'",
                           checksums=False)
    assert "a row of its meta table fails its checksum" in str(assert_one_line_error(edited))


def offsets(size: int, count: int) -> list[int]:
    """`count` deterministic positions spread over a file, plus its header."""
    return sorted({10, 20, 60, 70, *(size * k // count for k in range(1, count))} - {0})


def test_truncated_files(recorded: Path, tmp_path: Path, frames: list[Frame]) -> None:
    data = recorded.read_bytes()
    failed = 0
    for cut in [*offsets(len(data), 8), len(data) - 1, len(data) - 4096]:
        path = tmp_path / f"cut{cut}.orac"
        path.write_bytes(data[:cut])
        try:
            with Recording(path) as recording:
                assert [f for _, f in recording.iter_frames()] == frames[: len(recording)]
        except RecordingError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            failed += 1
    assert failed >= 8


def test_bit_flips(recorded: Path, tmp_path: Path, frames: list[Frame]) -> None:
    """A flipped bit is reported as one line, or lands where it changes nothing
    (free space in a page): it is never shown as different data."""
    data = recorded.read_bytes()
    reported = 0
    positions = offsets(len(data), 40)
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        path = tmp_path / "flipped.orac"
        path.write_bytes(bytes(flipped))
        try:
            with Recording(path) as recording:
                read = [f for _, f in recording.iter_frames()]
                meta = recording.meta
        except RecordingError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            reported += 1
            continue
        assert read == frames, f"bit flip at {position} changed the data silently"
        assert meta.host == "db-7"
    assert reported >= len(positions) // 4


def test_a_damaged_frame_is_reported_when_read(recorded: Path, frames: list[Frame], tmp_path: Path) -> None:
    damaged = copy_and_edit(recorded, tmp_path / "damaged.orac", "UPDATE frames SET crc = crc + 1 WHERE id = 12")
    with Recording(damaged) as recording:
        assert recording.frame(5) == frames[5]  # before the damage, read as written
        with pytest.raises(RecordingError, match=r"frame 11 fails its checksum"):
            recording.frame(13)


def test_kill_9_while_recording_loses_at_most_one_interval(tmp_path: Path) -> None:
    path = tmp_path / "killed.orac"
    code = (
        "from probes.store.headless import record\nfrom probes.registry import select_probes\n"
        "from probes.registry import all_probes\n"
        f"record({str(path)!r}, select_probes(['cpu', 'procs'], all_probes()), 0.2,\n"
        "       on_progress=lambda s: print(s.frames, flush=True))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        written = 0
        while written < 5:
            line = child.stdout.readline()
            assert line, "the recorder exited early"
            written = int(line)
        killed_ns = time.time_ns()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert Path(f"{path}-wal").exists()  # killed mid-recording, not closed
    with Recording(path) as recording:
        # every frame reported committed is there: only the one being
        # sampled or written at the kill can be missing
        assert len(recording) >= written
        # slack for a busy test machine between a commit and the kill
        assert killed_ns - recording.time_range[1] <= 0.2 * S + 1 * S
        assert all(f.samples["procs"].processes for _, f in recording.iter_frames())


def test_sigterm_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "term.orac"
    code = (
        "from probes.store.headless import record\nfrom probes.registry import select_probes\n"
        "from probes.registry import all_probes\n"
        f"s = record({str(path)!r}, select_probes(['cpu', 'procs'], all_probes()), 0.2,\n"
        "       on_progress=lambda s: print(s.frames, flush=True))\n"
        "print('done', s.frames, flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "1"
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 0
    frames = int(out.split("done")[1])
    assert not Path(f"{path}-wal").exists()
    with Recording(path) as recording:
        assert len(recording) == frames


def test_record_for_a_duration(tmp_path: Path) -> None:
    progress: list[RecordStats] = []
    stats = record(tmp_path / "d.orac", select_probes(["procs", "cpu"], all_probes()), 0.2, 0.4,
                   on_progress=progress.append)
    assert stats.frames == 3 == len(progress)  # samples at 0, 0.2 and 0.4 s
    with Recording(stats.path) as recording:
        assert set(recording.frame(2).samples) == {"cpu", "procs"}
        assert recording.meta.probes == ("procs", "cpu")
        assert recording.meta.interval_s == 0.2
    with pytest.raises(ValueError, match="unknown probe 'quantum'; choose from cpu, procs"):
        select_probes(["quantum"], all_probes())


# --- seeking ----------------------------------------------------------------------


def test_index_at_and_ranges(recorded: Path, frames: list[Frame]) -> None:
    with Recording(recorded) as recording:
        for i in (0, 1, 7, 20, 39):
            assert recording.index_at(frames[i].wall_ns) == i
            assert recording.index_at(frames[i].wall_ns + S // 2) == i  # between frames
        assert recording.index_at(START_WALL_NS - S) == 0
        assert recording.index_at(START_WALL_NS + 10_000 * S) == 39
        assert recording.index_range(frames[5].wall_ns, frames[9].wall_ns) == range(5, 10)
        assert recording.index_range(frames[5].wall_ns + 1, None) == range(6, 40)
        assert recording.index_range(None, START_WALL_NS - 1) == range(0, 0)
        assert recording.timestamps(3) == (frames[3].wall_ns, frames[3].mono_ns)
        with pytest.raises(IndexError):
            recording.frame(40)


@pytest.mark.parametrize(
    ("text", "expected_s"),
    [
        ("+90s", 90), ("+10m", 600), ("+1.5h", 5400), ("+7", 7),
        ("1764000123", 123), ("1764000123.5", 123.5),
    ],
)
def test_parse_time(text: str, expected_s: float) -> None:
    assert parse_time(text, START_WALL_NS) == START_WALL_NS + int(expected_s * S)


def test_parse_time_clock_and_dates() -> None:
    import datetime as dt

    start = dt.datetime(2026, 3, 1, 23, 0, 0).timestamp()
    start_ns = int(start * S)
    assert parse_time("23:30", start_ns) == start_ns + 1800 * S
    assert parse_time("00:30:15", start_ns) == start_ns + (5400 + 15) * S  # after midnight
    assert parse_time("2026-03-01 23:00:05", start_ns) == start_ns + 5 * S
    with pytest.raises(ValueError, match=r"cannot read time 'noon': use HH:MM"):
        parse_time("noon", start_ns)
    with pytest.raises(ValueError):
        parse_time("25:00", start_ns)


# --- replay -----------------------------------------------------------------------


class Screen:
    """Receives frames as the UI does, and waits for them."""

    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[Frame, dict[str, Any]]] = queue.Queue()

    def __call__(self, frame: Frame, views: dict[str, Any]) -> None:
        self.frames.put((frame, views))

    def next(self) -> tuple[Frame, dict[str, Any]]:
        return self.frames.get(timeout=5)

    def quiet(self) -> bool:
        time.sleep(0.05)
        return self.frames.empty()


@pytest.fixture
def replay(recorded: Path) -> Any:
    recording = Recording(recorded)
    sources: list[ReplaySource] = []

    def make(**options: Any) -> tuple[ReplaySource, Screen]:
        source = ReplaySource(recording, **options)
        screen = Screen()
        source.start(screen)
        sources.append(source)
        return source, screen

    yield make
    for source in sources:
        source.stop()
    recording.close()


def test_replay_has_the_collector_interface(replay: Any, frames: list[Frame]) -> None:
    source, screen = replay(paused=True)
    assert source.live is False and source.interval_s == 1.0 and source.paused is True
    frame, views = screen.next()  # starts on the first frame that has views
    assert frame == frames[1] and views == derive_frame(frames[0], frames[1])
    source.refresh()
    assert screen.next()[0] == frames[1]
    assert screen.quiet()


def test_replay_steps_back_and_forward(replay: Any, frames: list[Frame]) -> None:
    source, screen = replay(paused=True, start_index=10)
    assert screen.next()[0] == frames[10]
    for step, expected in ((1, 11), (1, 12), (-1, 11), (-5, 6), (-100, 0), (100, 39)):
        source.step(step)
        frame, views = screen.next()
        assert frame == frames[expected]
        # derived from the frame before, whichever way we came
        assert views == (derive_frame(frames[expected - 1], frame) if expected else {})
        assert source.position().index == expected
    assert source.paused


def test_replay_seeks_and_jumps(replay: Any, frames: list[Frame]) -> None:
    source, screen = replay(paused=True, start_index=10)
    screen.next()
    source.seek(frames[25].wall_ns + S // 2)
    assert screen.next()[0] == frames[25]
    source.jump(10)
    assert screen.next()[0] == frames[35]
    source.jump(-60)
    assert screen.next()[0] == frames[0]
    source.jump(0.5)  # less than a frame apart: still moves one
    assert screen.next()[0] == frames[1]
    position = source.position()
    assert (position.index, position.count, position.wall_ns) == (1, 40, frames[1].wall_ns)
    assert position.fraction == pytest.approx(1 / 39)


def test_replay_plays_at_speed_and_stops_at_the_end(replay: Any, frames: list[Frame]) -> None:
    source, screen = replay(start_index=30, speed=500)  # clamped to 60x
    assert source.speed == 60
    started = time.monotonic()
    shown = [screen.next()[0] for _ in range(10)]
    elapsed = time.monotonic() - started
    assert shown == frames[30:40]
    # nine 1 s gaps at 60x: 0.15 s
    assert 9 / 60 * 0.9 <= elapsed < 2.0
    assert screen.quiet()
    assert source.paused and source.position().index == 39
    source.paused = False  # at the end, play starts again
    assert screen.next()[0] == frames[1]
    source.speed = 0.1
    assert source.speed == 1


def test_playback_delay() -> None:
    assert playback_delay_s(0, S, 1.0, 1.0) == 1.0
    assert playback_delay_s(0, S, 50.0, 1.0) == 0.02
    # a gap of an hour (recording paused, machine asleep) is not sat through
    assert playback_delay_s(0, 3600 * S, 1.0, 1.0) == 2.0
    assert playback_delay_s(S, 0, 1.0, 1.0) == 0.0


def test_replay_reports_a_damaged_frame(recorded: Path, tmp_path: Path, frames: list[Frame]) -> None:
    damaged = copy_and_edit(recorded, tmp_path / "damaged.orac", "UPDATE frames SET crc = crc + 1 WHERE id = 6")
    errors: queue.Queue[RecordingError] = queue.Queue()
    with Recording(damaged) as recording:
        source = ReplaySource(recording, paused=True, on_error=errors.put)
        screen = Screen()
        source.start(screen)
        try:
            assert screen.next()[0] == frames[1]
            source.seek_index(5)
            assert "frame 5 fails its checksum" in str(errors.get(timeout=5))
            assert source.error is not None and source.paused
            source.seek_index(3)  # before the damage: still plays
            assert screen.next()[0] == frames[3]
        finally:
            source.stop()


def test_an_empty_recording_cannot_be_replayed(tmp_path: Path) -> None:
    Recorder(tmp_path / "none.orac", interval_s=1.0).close()
    with Recording(tmp_path / "none.orac") as recording:
        assert len(recording) == 0
        with pytest.raises(RecordingError, match="has no frames"):
            ReplaySource(recording)


# --- dump -------------------------------------------------------------------------


def test_dump_json_lines(recorded: Path, frames: list[Frame]) -> None:
    out = io.StringIO()
    with Recording(recorded) as recording:
        rows = dump(recording, "json", frames[10].wall_ns, frames[12].wall_ns, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows == len(lines) == 3
    first = lines[0]
    views = derive_frame(frames[9], frames[10])
    assert first["index"] == 10 and first["time"] == frames[10].wall_ns / 1e9 and first["interval_s"] == 1.0
    assert first["system"] == json.loads(json.dumps(dataclasses.asdict(views["cpu"])))
    assert first["processes"] == json.loads(json.dumps([dataclasses.asdict(p) for p in views["procs"].processes]))
    assert first["unavailable"] == {}
    assert lines[-1]["unavailable"] == {}
    out = io.StringIO()
    with Recording(recorded) as recording:
        assert dump(recording, "json", out=out) == 39  # the first frame has no rates
    assert json.loads(out.getvalue().splitlines()[-1])["unavailable"] == {
        "offcpu": {"reason": "no root", "remedy": "run `sudo orac`"}
    }


def test_dump_csv(recorded: Path, frames: list[Frame]) -> None:
    out = io.StringIO()
    with Recording(recorded) as recording:
        rows = dump(recording, "csv", frames[1].wall_ns, frames[2].wall_ns, out)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows == len(table) == len(frames[1].samples["procs"].processes) + len(frames[2].samples["procs"].processes)
    assert list(table[0]) == ["time", "index", "pid", "ppid", "user", "state", "cpu_percent", "rss_bytes",
                              "num_threads", "cpu_time_s", "cgroup", "name", "command", "start_time_ns", "thread_of"]
    python = next(r for r in table if r["pid"] == "2002" and r["index"] == "1")
    assert float(python["cpu_percent"]) == pytest.approx(99.0)
    out = io.StringIO()
    with Recording(recorded) as recording:
        assert dump(recording, "csv", out=out, table="system") == 39
    system = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert float(system[0]["cpu_total.busy_percent"]) > 0
    assert {"cpus.3.steal_percent", "load_avg.2", "pressure.memory.full_avg10"} <= set(system[0])
    with pytest.raises(ValueError, match="unknown format"):
        dump(Recording(recorded), "xml")


def test_processes_sample_types_are_what_the_recording_stores() -> None:
    # The codec names types by module and class: a rename breaks old files
    # unless the old name is registered (see probes.store.codec.register_type).
    table = TypeTable()
    Encoder(table).encode_frame({"procs": ProcessesSample((ProcSample(1, 0, "S", "x", "", "", "", 0, 0, 0, 1, 0),), 0)},
                                {}, None)
    types, probes = table.unsaved()
    assert [t.name for t in types] == ["probes.processes:ProcessesSample", "probes.processes:ProcSample"]
    assert probes == [ProbeRow("procs", "probes.processes:ProcessesSample", 1)]


def test_a_probe_added_mid_recording_round_trips(tmp_path) -> None:
    """A drill-down adds its profile to the frames while recording: later frames carry it."""
    from probes.sources.profile import ProfileSample, ProfileStack

    base = synthetic_frames(2)
    profile = ProfileSample(
        stacks=(ProfileStack(tid=42, samples=99, user_frames=("main", "burn_cpu"), kernel_frames=()),),
        thread_names={42: "burner"},
        samples=99,
        lost={"count_map_full": 0},
        frequency_hz=99,
        target_pid=42,
        exited=False,
    )
    later = type(base[1])(base[1].wall_ns, base[1].mono_ns, {**base[1].samples, "profile": profile}, base[1].unavailable)
    path = tmp_path / "drill.orac"
    with Recorder(path, interval_s=1.0, probes=["cpu", "procs"]) as rec:
        rec.append(base[0])
        rec.append(later)
    with Recording(path) as recording:
        assert "profile" not in recording.frame(0).samples
        assert recording.frame(1).samples["profile"] == profile
