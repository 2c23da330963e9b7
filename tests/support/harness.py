"""Helpers to drive OracApp from fixed frames in tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from support.synthetic import frames
from textual.pilot import Pilot

from probes.model.collector import FrameSequence
from probes.model.frame import Frame
from tui.app import OracApp


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


async def wait_for(pilot: Pilot, predicate: Callable[[], object], timeout_s: float = 10) -> None:
    """Wait until `predicate()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


def screenshot_files(directory: Path) -> list[str]:
    return sorted(p.suffix for p in directory.iterdir())


def burst(app: OracApp, *keys: str) -> None:
    """Send keys as one burst (a paste, a laggy link): all queued before the first is handled.

    Pilot.press waits for the app to go idle after each key, so it cannot show
    what a key typed right after another does while the first is still being
    handled.
    """
    import unicodedata

    from textual import events
    from textual.keys import (
        REPLACED_KEYS,
        _character_to_key,
        _get_unicode_name_from_key,
    )

    # as Pilot.press names keys and their characters
    for key in keys:
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)


class LiveFrames(FrameSequence):
    """Fixed frames of processes that run now (the test's own): the app may read more of them, and signal them."""

    live = True
