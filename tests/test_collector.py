"""The collector thread: frames keep coming while a slow probe starts."""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from probes.contract import ProbeUnavailable
from probes.model.collector import STARTING, Collector


class Quick:
    name: ClassVar[str] = "quick"

    def start(self) -> None:
        pass

    def sample(self) -> int:
        return 1

    def stop(self) -> None:
        pass


class Slow:
    """Stands for an eBPF probe: start() blocks until the test lets it go."""

    name: ClassVar[str] = "slow"
    slow_start: ClassVar[bool] = True

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.stopped = False

    def start(self) -> None:
        self.release.wait(10)
        if self.fail:
            raise ProbeUnavailable("no root", "run `sudo orac`")

    def sample(self) -> int:
        return 2

    def stop(self) -> None:
        self.stopped = True


def collect(collector: Collector, until, timeout_s: float = 10) -> list:
    frames: list = []
    done = threading.Event()

    def on_frame(frame, views) -> None:
        frames.append(frame)
        if until(frames):
            done.set()

    collector.start(on_frame)
    assert done.wait(timeout_s), "the collector never produced the frames awaited"
    return frames


def test_frames_flow_while_a_slow_probe_starts_then_it_joins() -> None:
    slow = Slow()
    collector = Collector([Quick(), slow], interval_s=0.2)
    try:
        frames = collect(collector, lambda f: len(f) >= 3)
        assert all(f.samples == {"quick": 1} for f in frames[:3])
        assert frames[0].unavailable["slow"] == (STARTING, "")
        slow.release.set()
        frames = collect_more(collector, frames, lambda f: "slow" in f[-1].samples)
        assert frames[-1].samples == {"quick": 1, "slow": 2}
        assert "slow" not in frames[-1].unavailable
    finally:
        slow.release.set()
        collector.stop()
    assert slow.stopped


def collect_more(collector: Collector, frames: list, until, timeout_s: float = 10) -> list:
    deadline = time.monotonic() + timeout_s
    while not until(frames):
        assert time.monotonic() < deadline, "the slow probe never joined"
        time.sleep(0.05)
    return frames


def test_a_slow_probe_that_cannot_run_says_why() -> None:
    slow = Slow(fail=True)
    slow.release.set()
    collector = Collector([Quick(), slow], interval_s=0.2)
    try:
        frames = collect(collector, lambda f: f[-1].unavailable.get("slow", ("",))[0] == "no root")
        assert frames[-1].unavailable["slow"] == ("no root", "run `sudo orac`")
    finally:
        collector.stop()


def test_probes_added_while_running_join_the_frames_and_leave_when_removed() -> None:
    extra = Slow()
    extra.release.set()
    collector = Collector([Quick()], interval_s=0.1)
    try:
        frames = collect(collector, lambda f: len(f) >= 2)
        collector.add_probes([extra])
        collect_more(collector, frames, lambda f: "slow" in f[-1].samples)
        collector.remove_probes(["slow"])
        assert extra.stopped
        seen = len(frames)
        collect_more(collector, frames, lambda f: len(f) >= seen + 2)
        assert "slow" not in frames[-1].samples and "slow" not in frames[-1].unavailable
    finally:
        collector.stop()


def test_a_probe_removed_while_starting_never_joins() -> None:
    late = Slow()
    collector = Collector([Quick()], interval_s=0.1)
    try:
        frames = collect(collector, lambda f: len(f) >= 1)
        collector.add_probes([late])
        collector.remove_probes(["slow"])
        late.release.set()
        seen = len(frames)
        collect_more(collector, frames, lambda f: len(f) >= seen + 5)
        assert all("slow" not in f.samples for f in frames)
        assert late.stopped
    finally:
        collector.stop()
