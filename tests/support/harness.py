"""Drive OracApp from fixed frames, or one pane alone in a minimal app (PaneApp).

    app = PaneApp(OffCpuPane(), view, focus="#offcpu-processes")
    async with mounted(app, size=(120, 30)) as pilot: ...
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widget import Widget

from probes.model.collector import FrameSequence
from probes.model.frame import Frame
from support.synthetic import frames
from themes import DEFAULT_THEME, THEMES
from tui.app import OracApp
from tui.pane import Pane
from tui.process_table import ProcessTable


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


def press_after_drawn(*keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """A snapshot's run_before: wait until the app has drawn its first frame, then press `keys`."""

    async def run_before(pilot: Pilot) -> None:
        await until_drawn(pilot, pilot.app)
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


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


P = TypeVar("P", bound=Pane)


class PaneApp(App[None], Generic[P]):
    """One pane alone, in orac's themes, fed once when mounted: a view, or why its probe cannot run.

    `then(pane)` runs after the feed (to give it joined views); `focus` names
    the widget to focus (a selector or a type). Enter on a process row posts
    ProcessTable.Selected, whose pids collect in `selected`. `title` is the
    screenshot's title (snapshots keep the one they were taken with).
    """

    def __init__(
        self,
        pane: P,
        view: Any = None,
        *,
        unavailable: tuple[str, str] | None = None,
        then: Callable[[P], None] | None = None,
        focus: str | type[Widget] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__()
        if title is not None:
            self.title = title
        self.pane = pane
        self.pane_view = view
        self.unavailable = unavailable
        self.then = then
        self.focus_on = focus
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        yield self.pane

    def on_mount(self) -> None:
        for theme in THEMES.values():
            self.register_theme(theme)
        self.theme = DEFAULT_THEME
        if self.unavailable is not None:
            self.pane.show_unavailable(*self.unavailable)
        else:
            assert self.pane_view is not None, "PaneApp needs a view or unavailable"
            self.pane.show_view(self.pane_view)
        if self.then is not None:
            self.then(self.pane)
        if self.focus_on is not None:
            self.query_one(self.focus_on).focus()

    def on_process_table_selected(self, message: ProcessTable.Selected) -> None:
        self.selected.append(message.pid)


async def settle(pilot: Pilot) -> None:
    """Let a pane draw what it was fed (its tables are rebuilt after its first refresh)."""
    await pilot.pause()
    await pilot.pause()


@asynccontextmanager
async def mounted(app: PaneApp[Any], size: tuple[int, int]) -> AsyncIterator[Pilot]:
    """Run `app` at `size` and yield its pilot once the pane has drawn what it was fed."""
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield pilot
