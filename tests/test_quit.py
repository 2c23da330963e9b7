"""q gives the terminal back at once, whatever the source is busy with; a recording in progress is saved."""

from __future__ import annotations

import threading
import time

from support.harness import until_drawn, wait_for

from probes.model.collector import Collector, FrameSequence
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe
from probes.store.reader import Recording
from tui.app import OracApp

SIZE = (160, 48)


class SlowToStop(FrameSequence):
    """Fixed frames whose stop takes as long as a loaded box's last tick and eBPF detach."""

    def __init__(self, *args, stop_s: float) -> None:
        super().__init__(*args)
        self.stop_s = stop_s
        self.stopped = threading.Event()

    def stop(self) -> None:
        time.sleep(self.stop_s)
        super().stop()
        self.stopped.set()


async def test_q_gives_the_terminal_back_before_the_source_has_stopped() -> None:
    from support import synthetic

    source = SlowToStop(synthetic.frames(), stop_s=3.0)
    app = OracApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, app)
        pressed = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - pressed < 1.0
    # ... and the source still stops, in the background.
    assert source.stopped.wait(timeout=10)


class SlowProbe:
    """A probe whose every sample takes a while, as the process table does under churn."""

    name = "slow"

    def start(self) -> None:
        pass

    def sample(self) -> int:
        time.sleep(1.5)
        return 0

    def stop(self) -> None:
        pass


def test_once_stopping_removing_probes_does_not_wait_for_the_tick_in_progress() -> None:
    collector = Collector([SlowProbe()], interval_s=0.2)
    collector.start(lambda frame, views: None)
    time.sleep(0.3)  # inside a sample, which holds the collector's lock
    stopper = threading.Thread(target=collector.stop)
    stopper.start()
    time.sleep(0.05)
    began = time.monotonic()
    collector.focus(None)
    collector.remove_probes(["slow"])
    assert time.monotonic() - began < 0.2
    stopper.join(timeout=10)


async def test_quitting_while_recording_saves_the_file_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    app = OracApp(Collector([SystemProbe(), ProcessProbe()], interval_s=0.2))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "procs" in app.views)
        await pilot.press("R")
        recorder = app.source.recorder
        await wait_for(pilot, lambda: recorder.frames >= 2)
        await pilot.press("q")
    said = capsys.readouterr().err
    assert f"saved {recorder.frames} frames in {recorder.path}" in said and "orac replay" in said
    with Recording(tmp_path / recorder.path) as recording:
        assert len(recording) == recorder.frames
