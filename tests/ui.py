"""Helpers to drive OracApp from fixed frames in tests."""

from __future__ import annotations

from pathlib import Path

from probes.collector import FrameSequence
from probes.frame import Frame
from textual.pilot import Pilot
from tui.app import OracApp

from synthetic import frames


def make_app(frame_list: list[Frame] | None = None, **kwargs) -> OracApp:
    return OracApp(FrameSequence(frame_list or frames()), **kwargs)


async def until_drawn(pilot: Pilot, app: OracApp, frame_list: list[Frame] | None = None) -> None:
    """Wait until the app has taken the last frame and redrawn."""
    last = (frame_list or frames())[-1]
    for _ in range(200):
        if app.frame is not None and app.frame.wall_ns == last.wall_ns:
            break
        await pilot.pause(0.01)
    else:
        raise AssertionError("the app never received the last frame")
    await pilot.pause()


def screenshot_files(directory: Path) -> list[str]:
    return sorted(p.suffix for p in directory.iterdir())
