"""The live screen's cadence: when the header says it falls behind, and the frame log the benchmark reads."""

from __future__ import annotations

from pathlib import Path

from tui.cadence import Cadence

S = 1_000_000_000


def test_on_time_says_nothing_and_late_frames_say_how_far_apart() -> None:
    cadence = Cadence(1.0)
    for i in range(6):
        cadence.arrived(i * S + (i % 2) * S // 20, i * S)
    assert cadence.behind() is None
    for i in range(6):
        cadence.arrived(10 * S + int(i * 2.4 * S), 0)
    assert cadence.behind() == "frames 2.4 s apart"
    cadence.restart()
    assert cadence.behind() is None


def test_the_frame_log_has_arrival_and_sample_times(tmp_path: Path) -> None:
    log = tmp_path / "frames"
    cadence = Cadence(1.0, str(log))
    cadence.arrived(5 * S, 4 * S)
    cadence.arrived(6 * S, 5 * S)
    cadence.close()
    assert log.read_text() == f"{5 * S} {4 * S}\n{6 * S} {5 * S}\n"
