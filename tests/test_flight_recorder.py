"""The flight recorder: the last minutes kept in memory, and recordings that start in the past."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
from support.cli import orac

from probes.model.collector import Collector
from probes.model.frame import Frame
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from probes.store.flight import FlightDecoder, FlightRecorder
from probes.store.reader import Recording
from probes.store.writer import Recorder

SECOND_NS = 1_000_000_000


def real_frames(n: int, spacing_s: float = 1.0) -> list[Frame]:
    """n real samples of this box, stamped `spacing_s` apart (taken as fast as they come)."""
    probes = [SystemProbe(), ProcessProbe()]
    for probe in probes:
        probe.start()
    try:
        start = time.monotonic_ns()
        frames = []
        for i in range(n):
            samples = {probe.name: probe.sample() for probe in probes}
            mono_ns = start + int(i * spacing_s * SECOND_NS)
            frames.append(Frame(wall_ns=time.time_ns() + int(i * spacing_s * SECOND_NS), mono_ns=mono_ns, samples=samples))
        return frames
    finally:
        for probe in probes:
            probe.stop()


def test_kept_frames_decode_to_the_frames_appended() -> None:
    frames = real_frames(25)
    kept = FlightRecorder(history_s=3600, keyframe_every=10)
    for frame in frames:
        kept.append(frame)
    decoded = list(FlightDecoder(kept).decode(kept.frames_after(0)))
    assert [f.wall_ns for f in decoded] == [f.wall_ns for f in frames]
    assert [f.samples for f in decoded] == [f.samples for f in frames]


def test_old_frames_go_a_keyframe_group_at_a_time_and_the_window_stays_covered() -> None:
    kept = FlightRecorder(history_s=20, keyframe_every=10)
    frames = real_frames(60)
    for frame in frames:
        kept.append(frame)
    first = kept.frames_after(0)
    # Everything of the last 20 s is there, and at most one group (10 frames) more.
    newest = frames[-1].mono_ns
    assert first[0].mono_ns <= newest - 20 * SECOND_NS
    assert first[0].mono_ns > newest - 30 * SECOND_NS
    assert first[0].keyframe
    # ... and it still decodes from its first frame.
    decoded = list(FlightDecoder(kept).decode(first))
    assert [f.samples for f in decoded] == [f.samples for f in frames[-len(first) :]]
    assert kept.memory_bytes == sum(len(k.data) for k in first)


def test_a_decoder_follows_types_that_appear_later() -> None:
    frames = real_frames(4)
    kept = FlightRecorder(history_s=3600)
    kept.append(Frame(frames[0].wall_ns, frames[0].mono_ns, {"cpu": frames[0].samples["cpu"]}))
    decoder = FlightDecoder(kept)
    assert len(list(decoder.decode(kept.frames_after(0)))) == 1
    # The process probe joins (as a drill-down's probes do) after the decoder was made.
    kept.append(frames[1])
    later = list(decoder.decode(kept.frames_after(1)))
    assert later[0].samples == frames[1].samples


def test_garbage_history_is_a_one_line_error() -> None:
    result = orac("--history", "lots")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "orac: error: argument --history: expected a duration like 10m or 1h, or 0 to keep none, not 'lots'"
    )


def test_a_recording_started_late_begins_in_the_kept_past_with_every_frame_once(tmp_path: Path) -> None:
    interval_s = 0.2
    collector = Collector([SystemProbe(), ProcessProbe()], interval_s, history=FlightRecorder(history_s=60))
    frames: list[Frame] = []
    enough = threading.Event()

    def on_frame(frame: Frame, views: object) -> None:
        frames.append(frame)
        if len(frames) >= 8:
            enough.set()

    collector.start(on_frame)
    try:
        assert enough.wait(20), "the collector never produced 8 frames"
        pressed_ns = time.time_ns()
        live = threading.Event()
        kept_frames: list[int] = []
        recorder = Recorder(tmp_path / "late.orac", interval_s=interval_s, probes=["cpu", "procs"])
        collector.start_recording(recorder, lambda n: (kept_frames.append(n), live.set()))
        assert live.wait(20), "the kept frames were never written"
        deadline = time.monotonic() + 20
        while recorder.frames < kept_frames[0] + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.stop_recording() is recorder
    finally:
        collector.stop()
    assert kept_frames[0] >= 8
    with Recording(tmp_path / "late.orac") as recording:
        walls = [frame.wall_ns for _, frame in recording.iter_frames(range(len(recording)))]
    # It starts with the first frame the collector took, before R ...
    assert walls[0] == frames[0].wall_ns
    assert walls[0] <= pressed_ns - 7 * interval_s * SECOND_NS
    # ... and holds every frame from there once, in order, up to when it stopped.
    assert walls == [f.wall_ns for f in frames[: len(walls)]]
    assert len(walls) >= kept_frames[0] + 5


def test_stopping_before_the_past_is_written_leaves_a_closed_file(tmp_path: Path) -> None:
    collector = Collector([SystemProbe()], 0.2, history=FlightRecorder(history_s=60))
    started = threading.Event()
    collector.start(lambda frame, views: started.set())
    try:
        assert started.wait(20)
        recorder = Recorder(tmp_path / "stopped.orac", interval_s=0.2, probes=["cpu"])
        collector.start_recording(recorder)
        assert collector.stop_recording() is recorder
        assert collector.recording is None
        time.sleep(0.5)
        # Frames after the stop go nowhere: the file is finished.
        assert recorder.append(Frame(time.time_ns(), time.monotonic_ns(), {})) is False
    finally:
        collector.stop()


@pytest.mark.parametrize("text", ["0", "0s"])
def test_history_zero_keeps_nothing(text: str) -> None:
    from tui.cli import history

    assert history(text) == 0.0


async def test_looking_back_in_the_live_ui_and_returning_misses_no_frame() -> None:
    from support.harness import wait_for

    from tui.app import OracApp

    # half a second: at a quarter, pressing h on 2 CPUs once held the sampler past its tick
    interval_s = 0.5
    kept = FlightRecorder(history_s=60)
    collector = Collector([SystemProbe(), ProcessProbe()], interval_s, history=kept)
    app = OracApp(collector)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: len(kept) >= 8, timeout_s=30)
        pressed_ns = time.time_ns()
        await pilot.press("h")
        assert app.replaying and not app.shows_live
        looking = app.replay
        await wait_for(pilot, lambda: app.frame is not None and app.frame.wall_ns == looking.position().wall_ns)
        newest = looking.position()
        assert newest.index == newest.count - 1
        await pilot.press("left", "left")
        await wait_for(pilot, lambda: looking.position().index == newest.index - 2)
        await wait_for(pilot, lambda: app.frame is not None and app.frame.wall_ns == looking.position().wall_ns)
        appended = kept.appended
        await pilot.pause(4.0)
        # sampling went on, the screen stayed where it was looked at
        assert kept.appended >= appended + 4
        assert app.frame is not None and app.frame.wall_ns == looking.position().wall_ns
        await pilot.press("h")
        assert not app.replaying and app.shows_live
        await wait_for(pilot, lambda: app.frame is not None and app.frame.wall_ns > newest.wall_ns)
    collector.stop()
    # from the frame before h on, one every interval: none was skipped while the screen looked back
    walls = [k.wall_ns for k in kept.frames_after(0) if k.wall_ns >= pressed_ns - interval_s * SECOND_NS]
    gaps_s = [(b - a) / SECOND_NS for a, b in pairwise(walls)]
    assert len(walls) >= 8 and max(gaps_s) < 1.5 * interval_s, gaps_s
