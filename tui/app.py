"""The orac application: panes fed by one frame source."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from probes.config import Config, default_path, save
from probes.contract import Views
from probes.model.bookmarks import Bookmark
from probes.model.collector import STARTING
from probes.model.frame import Frame
from probes.model.frame_source import FrameSource, LiveSource, SeekableSource
from probes.model.history import ProcessHistory
from probes.model.verdict import verdict
from probes.sources.cgroups import CGROUPS
from probes.sources.gpu import GPU
from probes.sources.own_cost import OWN_COST
from probes.sources.processes import PROCESSES, ProcessProbe
from probes.sources.profile import DEFAULT_FREQUENCY_HZ
from probes.sources.system import SYSTEM
from themes import DEFAULT_THEME, STYLESHEET, THEMES

from .cadence import Cadence
from .cgroups_pane import CgroupsPane, throttled_cgroups
from .choice_screen import ChoiceScreen
from .drilldown import DrillDown
from .format import human_bytes, span
from .gpu_pane import GpuPane
from .header_bar import HeaderBar
from .help_screen import HelpScreen
from .kernel_events_pane import KernelEventsPane
from .line_table import LineTable
from .messages import FrameReady, SourceFailed
from .network_pane import NetworkPane
from .offcpu_pane import OffCpuPane
from .pane import Pane, feed
from .probe_columns import probe_columns
from .process_pane import ProcessPane
from .process_screen import ProcessScreen
from .process_table import ProcessTable
from .replay_bar import REPLAY_BINDINGS, ReplayBar, SeekScreen, next_speed
from .screenshot import capture, write_screenshot
from .storage_panes import DisksPane, DisksTable, FilesystemsPane
from .syscalls_pane import SyscallsPane
from .system_panes import CpuPane, MemoryPane
from .verdict_strip import VerdictStrip

MIN_WIDTH = 80
MIN_HEIGHT = 24
# below this many rows only the CPU, memory and process panes are shown
SHORT_HEIGHT = 40
# below this many the filesystems pane steps aside and the disks and network panes are a line
# each: at 120x40 the process table had one row and the eBPF panes none
COMPACT_HEIGHT = 48
# below this many the kernel events and CPU quota panes are a line each and the disks
# pane shows no issuers: at 160x48 they left the process table no row
MEDIUM_HEIGHT = 56
# below this many columns the disks and filesystems panes go one above the other
NARROW_WIDTH = 120
# an incident bundle left open closes by itself after this long: it is for an incident, not a day
INCIDENT_MAX_S = 600

# Number keys show and hide panes, as btop's do; only on the main screen, where
# the process screen's 1-5 (its tabs) do not reach.
PANE_GROUP = Binding.Group("Panes", compact=True)
PANE_NAMES = {
    "gpu": "GPU", "disks": "disks", "filesystems": "filesystems", "net": "network", "kmsg": "kernel events",
    "cgroups": "CPU quota", "syscalls": "syscalls", "offcpu": "off-CPU",
}
PANE_KEYS = [
    Binding(str(n), f"pane('{name}')", f"{words} pane", group=PANE_GROUP,
            tooltip=f"Show or hide the {words} pane (saved in the config file)")
    for n, (name, words) in enumerate(PANE_NAMES.items(), start=1)
]


class OracApp(App[None]):
    TITLE = "orac"
    CSS_PATH = STYLESHEET

    BINDINGS: ClassVar[list[Binding]] = [
        *REPLAY_BINDINGS,
        Binding("R", "record", "Record", tooltip="Start or stop recording to a file (live only)"),
        Binding("h", "look_back", "Look back", tooltip="Go back over the kept minutes with replay's keys; h again: now (live only)"),
        Binding(
            "exclamation_mark", "incident", "Incident",
            tooltip="Start an incident bundle (the kept minutes, then live, and the screen now); again closes it"
            " and writes summary.md and a .tar.zst (live only)",
        ),
        Binding("q,f10", "quit", "Quit", tooltip="Quit (htop's F10 too)"),
        Binding("question_mark,f1", "help", "Keys", tooltip="This list of keys (htop's F1 too)"),
        Binding("p", "pause", "Pause", tooltip="Stop sampling and freeze the screen; again resumes"),
        Binding("s", "screenshot", "Screenshot", tooltip="Save the screen as SVG, PNG and text"),
        *NetworkPane.KEYS,
        *PANE_KEYS,
        Binding("v", "verdict", "Verdict", tooltip="Select the worst cell of the verdict strip, again the next; Enter opens it"),
    ]

    def __init__(
        self,
        source: FrameSource,
        *,
        theme: str = DEFAULT_THEME,
        screenshot_dir: Path = Path("orac-screenshots"),
        incident_dir: Path = Path("orac-incidents"),
        profile_hz: int = DEFAULT_FREQUENCY_HZ,
        redact: bool = True,
        config: Config | None = None,
    ) -> None:
        """`redact`: whether the source masks secrets in command lines; what it reads itself and records follow.
        `config`: the config file's settings; the theme and panes chosen here are saved to it."""
        super().__init__()
        # Tests and embedders that pass none get the defaults and write no file.
        self.config = config if config is not None else Config(default_path(), writable=False)
        self._theme_chosen = False
        self.redact = redact
        # wall time of a recording's first frame, when it began in the kept past
        self._recording_from_ns: int | None = None
        # a drill-down's on-CPU profile rate
        self.profile_hz = profile_hz
        self.source = source
        self.initial_theme = theme
        self.screenshot_dir = screenshot_dir
        self.incident_dir = incident_dir
        # the folder of the incident bundle being recorded, and its timer
        self._incident: Path | None = None
        self._incident_timer: Timer | None = None
        self.history = ProcessHistory()
        self.probe_columns = probe_columns()
        self.views = Views()
        self.frame: Frame | None = None
        # Live, a replay of the kept minutes while looking back (h); the source samples on meanwhile.
        self._looking_back: SeekableSource | None = None
        # stopping the source, once quitting
        self._stopping: threading.Thread | None = None
        # a replay's bookmarks, once scanned (probes.store.bookmark_scan), and the scan's stop
        self.bookmarks: list[Bookmark] | None = None
        self._stop_scan = threading.Event()
        # only a live screen can fall behind: a replay's frames come as fast as it is asked
        self.cadence = Cadence.from_env(source.interval_s) if source.live else None
        # None until the heap is frozen; then whether eBPF probes were still starting (it is frozen again once they run)
        self._frozen_while_starting: bool | None = None

    @property
    def live_source(self) -> LiveSource | None:
        """The source, where it samples this machine now (it records, and a drill-down adds probes to it)."""
        return self.source if isinstance(self.source, LiveSource) else None

    @property
    def replaying(self) -> bool:
        """Whether the frames shown come from a recording: a replay, or the kept minutes looked back over."""
        return self._looking_back is not None or isinstance(self.source, SeekableSource)

    @property
    def shows_live(self) -> bool:
        """Whether what is shown is this machine now: its pids may be signalled, a drill-down traces."""
        return self.source.live and self._looking_back is None

    @property
    def replay(self) -> SeekableSource:
        """What is being replayed (only replay actions and replay widgets ask)."""
        if self._looking_back is not None:
            return self._looking_back
        assert isinstance(self.source, SeekableSource), "not a replay"
        return self.source

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with Vertical(id="main"):
            yield VerdictStrip(live=self.source.live)
            with Horizontal(id="top"):
                yield CpuPane()
                yield MemoryPane()
            yield GpuPane()
            with Horizontal(id="storage"):
                yield DisksPane()
                yield FilesystemsPane()
            yield NetworkPane()
            yield KernelEventsPane()
            yield CgroupsPane()
            yield ProcessPane()
            yield SyscallsPane()
            yield OffCpuPane(own_pid=os.getpid() if self.source.live else None)
            if self.replaying:
                yield ReplayBar(str(self.replay.recording.path))
        yield Static(
            f"The terminal is too small for orac.\nIt needs at least {MIN_WIDTH}x{MIN_HEIGHT}; enlarge the window.",
            id="too-small",
        )
        yield Footer()

    def on_mount(self) -> None:
        for theme in THEMES.values():
            self.register_theme(theme)
        self.theme = self.initial_theme
        self._theme_chosen = True
        for pane in self.query(Pane):
            if not self.config.shown(pane.PROBE.name):
                pane.add_class("-hidden")
        self.query_one(ProcessTable).focus()
        self._check_size(self.size.width, self.size.height)
        # A replay's damaged frame, or a live recording's write error.
        self.source.on_error = lambda exc: self.post_message(SourceFailed(str(exc)))
        if self.replaying:
            self._scan_bookmarks(self.replay.recording.path)
        if self.replaying and self.replay.recording.warning is not None:
            self.notify(self.replay.recording.warning, title="Part of this recording is missing",
                        severity="warning", timeout=30)
        self.source.start(lambda frame, views: self.post_message(FrameReady(frame, views, live=self.source.live)))

    async def action_quit(self) -> None:
        if self._incident is not None:
            # Its summary is written before orac goes: a bundle without one is half a bundle.
            folder = self._incident
            self._close_incident()
            saved = Text(self._finish_incident(folder))
            self._stop_source()
            self.exit(message=saved)
            return
        saved = self._finish_recording()
        # Before the screens close: a drill-down closing then need not wait
        # for the tick in progress to remove its probes.
        self._stop_source()
        self.exit(message=saved)

    def on_unmount(self) -> None:
        self._stop_scan.set()
        if self._looking_back is not None:
            self._looking_back.stop()
        self._finish_recording()
        self._stop_source()
        if self.cadence is not None:
            self.cadence.close()
        if self._frozen_while_starting is not None:
            gc.unfreeze()

    def _finish_recording(self) -> Text | None:
        """Close a recording in progress (quick: each frame is already its own transaction); what to say of it."""
        live = self.live_source
        recorder = live.stop_recording() if live is not None else None
        if recorder is None:
            return None
        return Text(f"saved {recorder.frames} frames in {recorder.path}; open it with `orac replay {recorder.path}`")

    def _stop_source(self) -> None:
        """Stop the source in the background: waiting here, for a tick in
        progress under load and for eBPF programs to detach, kept the screen
        for seconds after q. The thread is not a daemon, so the process
        waits for it after the terminal is given back, and every probe stops."""
        if self._stopping is None:
            self._stopping = threading.Thread(target=self.source.stop, name="orac-stop")
            self._stopping.start()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        too_small = width < MIN_WIDTH or height < MIN_HEIGHT
        # On the main screen, not the app: a class change on the app restyles
        # only the screen on top, so a resize while the process screen was
        # open left the main screen's panes hidden for good.
        main = self.screen_stack[0]
        main.set_class(too_small, "-too-small")
        main.set_class(height < SHORT_HEIGHT, "-short")
        main.set_class(height < COMPACT_HEIGHT, "-compact")
        main.set_class(height < MEDIUM_HEIGHT, "-medium")
        main.set_class(width < NARROW_WIDTH, "-narrow")
        # Hiding the panes took focus away from the table; give it back.
        if not too_small and self.screen is self.screen_stack[0] and self.focused is None:
            self.call_after_refresh(self.query_one(ProcessTable).focus)

    def on_frame_ready(self, message: FrameReady) -> None:
        if not self.is_running:
            # Shutting down: the source stops in the background (see
            # _stop_source) and its last frames arrive as the panes go.
            return
        frame, views = message.frame, message.views
        header = self.query_one(HeaderBar)
        if self.cadence is not None and message.live:
            self.cadence.arrived(time.monotonic_ns(), frame.mono_ns)
            header.set_behind(self.cadence.behind())
        if message.live and self._looking_back is not None:
            # Sampled, kept and recorded as ever; shown when h comes back to now.
            return
        if self.frame is not None and not 0 < frame.mono_ns - self.frame.mono_ns <= 3e9 * self.source.interval_s:
            # A seek or step back in a replay: the sparklines' minute starts over.
            self.history = ProcessHistory()
        self.frame = frame
        if self.replaying:
            bar = self.query_one(ReplayBar)
            bar.error = None
            bar.show(self.replay.position())
        self.views = views
        processes = views.get(PROCESSES)
        if processes is not None:
            self.history.add(processes.processes)
        header.update_views(views.get(SYSTEM), processes, views.get(OWN_COST))
        self.query_one(VerdictStrip).show(verdict(views, self.config.thresholds, frame.wall_ns), frame.wall_ns)
        table = self.query_one(ProcessTable)
        cgroups = views.get(CGROUPS)
        table.mark_throttled(throttled_cgroups(cgroups) if cgroups is not None else set())
        for column in self.probe_columns:
            column.update(table, frame, views)
        if views.get(GPU) is not None:
            self.query_one(GpuPane).set_host_processes(processes)
        for screen in self.screen_stack:
            self._feed(screen, frame, views)
            for drill in screen.query(DrillDown):
                drill.take_frame(frame)
        if self._frozen_while_starting is not False:
            # once frozen with every probe running, nothing more to do on any frame
            starting = any(why.reason == STARTING for why in frame.unavailable.values())
            if self._frozen_while_starting is None or not starting:
                self._frozen_while_starting = starting
                self.call_after_refresh(self._freeze_heap)

    @staticmethod
    def _freeze_heap() -> None:
        """Leave what exists once the first frame is drawn (modules, widgets, styles), and again once the eBPF
        probes run (their programs' tables), out of every later collection.

        A full collection of that heap (some 125,000 objects) took about 100 ms
        every 25 s with every pane, holding the GIL throughout: the collector
        thread's tick waited behind it, and pressing h in a test process with
        a larger heap once held it past a whole interval. Frozen, a collection
        looks only at what came since; refcounting still frees what dies.
        """
        gc.collect()
        gc.freeze()

    def on_source_failed(self, message: SourceFailed) -> None:
        if self.replaying:
            # On screen for as long as it holds, not only in a notification;
            # `orac replay` also prints it and exits non-zero on quitting.
            self.query_one(ReplayBar).show_error(message.error)
            self.notify(message.error, title="Replay stopped", severity="error", timeout=30)
            return
        self._update_flags()
        self.notify(f"{message.error}; sampling goes on", title="Recording stopped", severity="error", timeout=30)

    def _feed(self, screen: Screen[Any], frame: Frame, views: Views) -> None:
        feed(screen.query(Pane), frame, views)

    def on_process_table_selected(self, message: ProcessTable.Selected) -> None:
        screen = ProcessScreen(
            message.pid,
            self.history.series(message.pid),
            live=self.shows_live,
            current=self.views.get(PROCESSES),
            shared=self.system_wide_probes(),
            profile_hz=self.profile_hz,
            redact=self.redact,
        )
        self.push_screen(screen)
        # Its panes show the current tick at once, not after the next one
        # (in a paused replay there may be no next one).
        if self.frame is not None:
            self.call_after_refresh(self._feed, screen, self.frame, self.views)

    def action_verdict(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.query_one(VerdictStrip).cycle()

    def on_verdict_strip_show_pane(self, message: VerdictStrip.ShowPane) -> None:
        for pane in self.screen_stack[0].query(Pane):
            if pane.PROBE.name == message.probe:
                pane.remove_class("-hidden")
                pane.scroll_visible()
                focusable = [w for w in pane.query("*") if w.focusable]
                if focusable:
                    focusable[0].focus()
                return

    def on_drill_down_tracing(self, message: DrillDown.Tracing) -> None:
        live = self.live_source
        if live is not None:
            live.add_probes(message.probes)
            # The app's off-CPU and syscalls probes count this process thread by thread.
            live.focus(message.pid)

    def on_drill_down_untracing(self, message: DrillDown.Untracing) -> None:
        live = self.live_source
        if live is not None:
            live.focus(None)
            live.remove_probes(message.names)

    def read_threads(self, on: bool) -> bool:
        """Have the live process probe read every process's threads (H), or stop; False where there is none (replay)."""
        live = self.live_source
        probes = [p for p in live.probes if isinstance(p, ProcessProbe)] if live is not None else []
        for probe in probes:
            probe.threads = on
        if probes and on:
            # Show them now, not at the end of the interval.
            self.source.refresh()
        return bool(probes)

    def system_wide_probes(self) -> set[str]:
        """Probes whose views this app has per process: the drill-down narrows them rather than tracing again."""
        live = self.live_source
        if live is not None:
            return {p.name for p in live.probes}
        return set(self.frame.samples) if self.frame is not None else set()

    # actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Replay keys exist only in replay, recording only live.
        if action.startswith("replay_"):
            return self.replaying
        if action in ("record", "incident", "look_back"):
            return self.live_source is not None
        if action == "pane":
            return self.screen is self.screen_stack[0]
        return True

    def _update_flags(self) -> None:
        flags = ["PAUSED"] if self.source.paused else []
        if self._looking_back is not None:
            flags.append("LOOKING BACK (h: now)")
        live = self.live_source
        recorder = live.recording if live is not None else None
        if recorder is not None:
            began = self._recording_from_ns
            since = f" from {time.strftime('%H:%M:%S', time.localtime(began / 1e9))}" if began else ""
            what = f"INCIDENT {self._incident}/" if self._incident is not None else f"REC {recorder.path}"
            flags.append(f"{what}{since}")
        self.query_one(HeaderBar).set_flags(flags)

    def action_record(self) -> None:
        from probes.store.format import RecordingError
        from probes.store.writer import Recorder, default_path

        collector = self.live_source
        if collector is None:
            return
        if collector.recording is not None:
            said = self._finish_recording()
            self._update_flags()
            if said is not None:
                self.notify(said.plain)
            return
        history = getattr(collector, "history", None)
        first_ns = history.first_wall_ns if history is not None else None
        try:
            recorder = Recorder(
                default_path(wall_ns=first_ns),
                redact=self.redact,
                interval_s=collector.interval_s,
                probes=[p.name for p in collector.probes],
                unavailable=dict(self.frame.unavailable) if self.frame else None,
            )
        except RecordingError as exc:
            self.notify(f"cannot record: {exc}", severity="error")
            return
        self._recording_from_ns = first_ns

        def started(kept: int) -> None:
            if kept:
                self.call_from_thread(
                    self.notify, f"recording to {recorder.path}: {kept} frames from before R, then live; R again stops"
                )

        collector.start_recording(recorder, started)
        self._update_flags()
        if first_ns is None:
            self.notify(f"recording to {recorder.path}; R again stops")

    def action_incident(self) -> None:
        """Open an incident bundle (see probes.store.incident), or close the open one."""
        from probes.store.format import RecordingError
        from probes.store.incident import RECORDING_NAME, bundle_name
        from probes.store.private_files import PrivateDirectory
        from probes.store.writer import Recorder

        collector = self.live_source
        if collector is None:
            return
        if self._incident is not None:
            folder = self._incident
            self._close_incident()
            self.notify(f"closing the incident bundle {folder}/: writing summary.md and the archive")
            self._finish_incident_aside(folder)
            return
        if collector.recording is not None:
            self.notify("a recording (R) is running: stop it with R first, then ! records the bundle", severity="error")
            return
        history = getattr(collector, "history", None)
        first_ns = history.first_wall_ns if history is not None else None
        folder = self.incident_dir / bundle_name()
        try:
            PrivateDirectory(folder, create=True).close()
            recorder = Recorder(
                folder / RECORDING_NAME, redact=self.redact, interval_s=collector.interval_s,
                probes=[p.name for p in collector.probes],
                unavailable=dict(self.frame.unavailable) if self.frame else None,
            )
        except (OSError, RecordingError) as exc:
            self.notify(f"no incident bundle: {exc}", severity="error")
            return
        self._incident = folder
        self._recording_from_ns = first_ns
        svg, text = capture(self)
        self._write_screenshot(svg, text, folder)
        collector.start_recording(recorder)
        self._incident_timer = self.set_timer(INCIDENT_MAX_S, self._incident_ended)
        self._update_flags()
        since = f" from {time.strftime('%H:%M:%S', time.localtime(first_ns / 1e9))}" if first_ns else ""
        self.notify(
            f"incident bundle {folder}/: recording{since}, and the screen now; ! again closes it"
            f" (by itself after {INCIDENT_MAX_S // 60:.0f} min)", title="Incident",
        )

    def _incident_ended(self) -> None:
        if self._incident is not None:
            self.action_incident()

    def _close_incident(self) -> None:
        """Stop the bundle's recording; the folder then only needs its summary."""
        if self._incident_timer is not None:
            self._incident_timer.stop()
            self._incident_timer = None
        live = self.live_source
        if live is not None:
            live.stop_recording()
        self._incident = None
        self._recording_from_ns = None
        self._update_flags()

    @work(thread=True, exit_on_error=False)
    def _finish_incident_aside(self, folder: Path) -> None:
        said = self._finish_incident(folder)
        failed = said.startswith("incident bundle not finished")
        self.call_from_thread(self.notify, said, title="Incident", severity="error" if failed else "information")

    def _finish_incident(self, folder: Path) -> str:
        """Write the bundle's summary and archive; what to say of it."""
        from probes.store.format import RecordingError
        from probes.store.incident import finish_bundle

        try:
            archive = finish_bundle(folder)
        except (OSError, RecordingError) as exc:
            return f"incident bundle not finished in {folder}/: {exc}"
        return f"incident bundle {folder}/ (summary.md, recording, screen) and {archive}"

    def action_replay_play(self) -> None:
        self.action_pause()

    def action_replay_step(self, frames: int) -> None:
        self.replay.step(frames)
        self._update_flags()

    def action_replay_jump(self, seconds: float) -> None:
        self.replay.jump(seconds)

    def action_replay_speed(self, direction: int) -> None:
        self.replay.speed = next_speed(self.replay.speed, direction)
        self.query_one(ReplayBar).show(self.replay.position())

    def action_replay_seek(self) -> None:
        replay = self.replay
        first, last = replay.recording.time_range

        def go(wall_ns: int | None) -> None:
            if wall_ns is not None:
                replay.seek(wall_ns)

        self.push_screen(SeekScreen(first, last), go)

    @work(thread=True, exit_on_error=False)
    def _scan_bookmarks(self, path: Path) -> None:
        from probes.store.bookmark_scan import scan_bookmarks
        from probes.store.format import RecordingError

        bar = self.query_one(ReplayBar)

        def progress(done: int, count: int) -> None:
            self.call_from_thread(bar.show_marks, f"marks {100 * done // count} % read")

        try:
            marks = scan_bookmarks(path, progress, self._stop_scan)
        except RecordingError as exc:
            self.call_from_thread(bar.show_marks, "no marks")
            self.call_from_thread(self.notify, f"bookmarks not found: {exc}", severity="warning")
            return
        if self._stop_scan.is_set():
            return
        self.bookmarks = marks
        self.call_from_thread(bar.show_marks, f"marks {len(marks)}")

    def action_replay_bookmark(self, direction: int) -> None:
        marks = self.bookmarks
        if self._looking_back is not None:
            self.notify("bookmarks are found in replays: record (R) and open the file with orac replay")
            return
        if marks is None:
            self.notify("bookmarks: the recording is still being read")
            return
        now = self.replay.position().wall_ns
        ahead = [m for m in marks if m.wall_ns > now] if direction > 0 else [m for m in reversed(marks) if m.wall_ns < now]
        if not ahead:
            self.notify(f"no bookmark {'after' if direction > 0 else 'before'} this frame")
            return
        self.replay.seek(ahead[0].wall_ns)
        self.notify(ahead[0].line(), title="Bookmark")

    def action_replay_bookmarks(self) -> None:
        marks = self.bookmarks
        if self._looking_back is not None:
            self.action_replay_bookmark(0)
            return
        if marks is None:
            self.notify("bookmarks: the recording is still being read")
            return
        if not marks:
            self.notify("no bookmarks: nothing began in this recording (see `?`)")
            return
        replay = self.replay

        def go(chosen: str | None) -> None:
            if chosen is not None:
                replay.seek(marks[int(chosen)].wall_ns)

        self.push_screen(
            ChoiceScreen(f"{len(marks)} bookmarks: go to", [(str(i), m.line()) for i, m in enumerate(marks)], width=72), go,
        )

    def action_look_back(self) -> None:
        """Go back over the kept minutes with replay's keys, paused at the newest; again, back to now."""
        from probes.store.flight import KeptRecording
        from probes.store.replay import ReplaySource

        looking = self._looking_back
        if looking is not None:
            self._looking_back = None
            looking.stop()
            self.query_one(ReplayBar).remove()
            self.query_one(VerdictStrip).live = True
            self._update_flags()
            self.refresh_bindings()
            # The newest frame at once, not at the next tick.
            live = self.live_source
            if live is not None:
                live.refresh()
            self.notify("back to now", title="Live")
            return
        live = self.live_source
        history = getattr(live, "history", None)
        if live is None or history is None or len(history) < 2:
            self.notify("nothing kept to go back over: orac keeps the past with --history (default 10m)")
            return
        kept = KeptRecording(history, live.interval_s, self.redact)
        source = ReplaySource(kept, start_index=len(kept) - 1, paused=True, redact=False)
        source.on_error = lambda exc: self.post_message(SourceFailed(str(exc)))
        self._looking_back = source
        self.query_one(VerdictStrip).live = False
        self.query_one("#main").mount(ReplayBar(str(kept.path)))
        self.query_one(ReplayBar).show_marks("h: back to now")
        self._update_flags()
        self.refresh_bindings()
        source.start(lambda frame, views: self.post_message(FrameReady(frame, views, live=False)))
        first = time.strftime("%H:%M:%S", time.localtime(kept.time_range[0] / 1e9))
        self.notify(
            f"looking back from now to {first}: space plays, ←/→ step, ,/. and </> jump, g goes to a time;"
            " sampling goes on; h comes back to now", title="Looking back",
        )

    def action_pause(self) -> None:
        self.source.paused = not self.source.paused
        if self.cadence is not None:
            self.cadence.restart()
        self._update_flags()
        if self.replaying:
            self.query_one(ReplayBar).show(self.replay.position())
        if self.source.paused:
            self.notify("paused: press p to resume" + (" (or space)" if self.replaying else ""))
        else:
            # Show the present at once rather than after the rest of the interval.
            self.source.refresh()
            self.notify("resumed")

    def action_all_interfaces(self) -> None:
        self.screen_stack[0].query_one(NetworkPane).toggle_all()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_sections(), self.run_status()))

    def run_status(self) -> list[tuple[str, str]]:
        """What help says of this run: the past kept for R to record from."""
        live = self.live_source
        if live is None:
            return []
        history = getattr(live, "history", None)
        if history is None:
            return [("kept past", "none (--history 0): R records from when it is pressed")]
        first = history.first_wall_ns
        span_s = (time.time_ns() - first) / 1e9 if first is not None else 0.0
        return [(
            "kept past",
            f"{span(span_s)} of {span(history.history_s)} in {human_bytes(history.memory_bytes)}"
            " (--history): R records from its start",
        )]

    def key_sections(self) -> Iterable[tuple[str, Iterable[Binding]]]:
        palette = Binding("ctrl+p", "command_palette", "Command palette: themes, actions, keys")
        return [
            ("Everywhere", [b for b in self.BINDINGS if b not in (*REPLAY_BINDINGS, *NetworkPane.KEYS, *PANE_KEYS)]
             + [palette]),
            ("Main screen: show or hide a pane", PANE_KEYS),
            ("Verdict strip", VerdictStrip.BINDINGS),
            ("Replay (orac replay FILE)", REPLAY_BINDINGS),
            ("Process table", [*ProcessTable.BINDINGS, *ProcessPane.BINDINGS]),
            ("Every table", [b for b in LineTable.BINDINGS if b.tooltip]),
            ("Disks pane", DisksTable.BINDINGS),
            ("Off-CPU pane", OffCpuPane.BINDINGS),
            ("Network pane", NetworkPane.KEYS),
            ("Process screen", ProcessScreen.BINDINGS),
        ]

    def action_screenshot(self) -> None:
        svg, text = capture(self)
        self._write_screenshot(svg, text, self.screenshot_dir)

    @work(thread=True, exit_on_error=False)
    def _write_screenshot(self, svg: str, text: str, directory: Path) -> None:
        try:
            paths = write_screenshot(directory, svg, text)
        except Exception as exc:
            self.call_from_thread(self.notify, f"screenshot not saved: {exc}", severity="error")
            return
        names = ", ".join(p.name for p in paths)
        self.call_from_thread(self.notify, f"saved {names} in {paths[0].parent}/", title="Screenshot")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own screenshot (an SVG only) and key panel would sit
        # beside orac's under the same names.
        yield from (c for c in super().get_system_commands(screen) if c.title not in ("Screenshot", "Keys"))
        yield SystemCommand("Pause / resume", "Stop or restart sampling (p)", self.action_pause)
        yield SystemCommand("Screenshot", "Save SVG, PNG and text of the screen (s)", self.action_screenshot)
        yield SystemCommand("Show all keys", "Every key orac understands (?)", self.action_help)
        if self.check_action("record", ()):
            yield SystemCommand("Record / stop recording", "Record what is shown to a file (R)", self.action_record)
        if screen is not self.screen_stack[0]:
            return
        pane = screen.query_one(ProcessPane)
        table = pane.table
        for column in table.columns:
            yield SystemCommand(
                f"Sort processes by {column.label}", "Again reverses the order", partial(table.action_sort, column.key)
            )
        yield SystemCommand("Filter processes", "On command and user, as you type (/)", pane.action_filter)
        yield SystemCommand("Search processes", "Move to the next match as you type (F3)", pane.action_search)
        yield SystemCommand("Processes of one user", "Or everyone's (u)", pane.action_choose_user)
        yield SystemCommand("Tree / list of processes", "Children under their parents (t)", table.action_toggle_tree)
        yield SystemCommand("Follow the selected process", "Through sorts and filters (F)", table.action_follow)
        for key, (name, words) in enumerate(PANE_NAMES.items(), start=1):
            yield SystemCommand(
                f"Show / hide the {words} pane", f"The rest of the screen takes its room ({key})",
                partial(self.action_pane, name),
            )

    def action_pane(self, name: str) -> None:
        pane = next(p for p in self.screen_stack[0].query(Pane) if p.PROBE.name == name)
        pane.toggle_class("-hidden")
        self.config.panes[pane.PROBE.name] = not pane.has_class("-hidden")
        self._save_config()

    def watch_theme(self, theme: str) -> None:
        # Not the theme set at start (a --theme may be for this run only), only one chosen in the UI.
        if self._theme_chosen and theme != self.config.theme:
            self.config.theme = theme
            self._save_config()

    def _save_config(self) -> None:
        try:
            save(self.config)
        except OSError as exc:
            self.notify(f"settings not saved to {self.config.path}: {exc}", severity="warning")
