"""The process pane: the table, its incremental filter and signal sending."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from probes.contract import ProbeSpec
from probes.host.signals import NotThatProcess, send_signal
from probes.sources.kmsg import KMSG, KernelEvent
from probes.sources.processes import PROCESSES, ProcessesView, ProcessView, short_cgroup

from .choice_screen import ChoiceScreen
from .pane import Pane
from .process_table import ProcessTable
from .signal_screen import SignalScreen

# ticks an OOM-killed process stays in the table after its kill
KILLED_TICKS = 60
# "Killed process 812 (java) total-vm:..kB, anon-rss:..kB, file-rss:..kB, shmem-rss:..kB"
_KILLED_RSS = re.compile(r"(anon|file|shmem)-rss:(\d+)kB")


def killed_view(event: KernelEvent, last: ProcessView | None, wall_s: float) -> ProcessView:
    """An OOM kill's victim as a row: what the table last knew of it, state X, its RSS at the kill (at `wall_s`)."""
    rss_kib = sum(int(kib) for _, kib in _KILLED_RSS.findall(event.message))
    at = time.strftime("%H:%M:%S", time.localtime(wall_s))
    what = last.command if last is not None else f"[{event.comm}]"
    return ProcessView(
        pid=event.pid or 0,
        ppid=last.ppid if last is not None else 0,
        user=last.user if last is not None else "?",
        state="X",
        cpu_percent=None,
        rss_bytes=rss_kib << 10 if rss_kib else (last.rss_bytes if last is not None else 0),
        num_threads=last.num_threads if last is not None else 0,
        cpu_time_s=last.cpu_time_s if last is not None else 0.0,
        cgroup=short_cgroup(event.cgroup) if event.cgroup else (last.cgroup if last is not None else "?"),
        name=event.comm or (last.name if last is not None else "?"),
        command=f"OOM-killed {at}: {what}",
        start_time_ns=last.start_time_ns if last is not None else 0,
    )


class ProcessPane(Pane):
    """Every process, fed by the "procs" probe; an OOM kill's victim (from "kmsg") stays a while, marked."""

    PROBE: ClassVar[ProbeSpec[Any, Any]] = PROCESSES
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = (KMSG,)

    # The filter's and search's keys are priority bindings: the app handles
    # them as they arrive, in order, before handing the next key to the
    # focused widget. Keys typed in one burst after `/` (a paste, a laggy
    # link) then reach the filter, and the keys after Enter or Escape the
    # table, rather than whichever widget had the focus when the burst began.
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("slash,f4", "filter", "Filter", priority=True, tooltip="Filter on command and user as you type"),
        Binding("f3", "search", "Search", priority=True, show=False, key_display="F3",
                tooltip="Search command and user as you type: the cursor goes to the first match; F3 again, the next"),
        Binding("enter", "keep_filter", "Keep filter", priority=True, show=False, tooltip="In the filter: keep it and go back to the table"),
        Binding("enter,escape", "end_search", "End search", priority=True, show=False, tooltip="In the search: stay on the match"),
        Binding("escape", "clear_filter", "Clear filter", priority=True, show=False, tooltip="Clear the filter (typing it, or kept)"),
        Binding("u", "choose_user", "User", show=False, tooltip="Show one user's processes only, or everyone's"),
        Binding("left", "scroll_command(-10)", "Scroll left", show=False, tooltip="Scroll the commands left (live; in replay, a frame back)"),
        Binding("right", "scroll_command(10)", "Scroll right", show=False, tooltip="Scroll the commands right, to read long ones (live; in replay, a frame on)"),
        Binding("H", "toggle_threads", "Threads", show=False, tooltip="Show each process's threads among the processes, or hide them"),
        Binding("k,f9", "kill", "Signal", tooltip="Send a signal to the selected process, or to every tagged one, after confirming"),
        Binding("space", "tag", "Tag", show=False, tooltip="Tag the selected process, or untag it (k signals every tagged one)"),
        Binding("U", "untag_all", "Untag all", show=False, tooltip="Untag every process"),
    ]

    DEFAULT_CSS = """
    ProcessPane {
        height: 2fr;
    }
    ProcessPane > Input, ProcessPane > Input:focus {
        dock: bottom;
        display: none;
        border: none;
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    ProcessPane.-filtering > #filter { display: block; }
    ProcessPane.-searching > #search { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield ProcessTable()
        # Not select_on_focus: its Focus event comes after keys already typed, which would replace them.
        yield Input(
            placeholder="filter on command or user; Enter keeps it, Escape clears it", select_on_focus=False, id="filter"
        )
        yield Input(placeholder="search command or user; F3 the next match, Enter or Escape stays there",
                    select_on_focus=False, id="search")

    def on_mount(self) -> None:
        self.border_title = "Processes"
        # pid -> (its row, ticks left) of the processes the OOM killer killed lately
        self.killed: dict[int, tuple[ProcessView, int]] = {}

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    def show_view(self, view: ProcessesView) -> None:
        previous: ProcessesView | None = self.view
        self.view = view
        self.unavailable = None
        self._note_kills(previous)
        processes = view.processes
        if self.killed:
            alive = {p.pid for p in processes}
            processes = processes + tuple(row for row, _ in self.killed.values() if row.pid not in alive)
        self.table.update_processes(processes, view.threads)
        self._update_title()

    def _note_kills(self, previous: ProcessesView | None) -> None:
        """Keep this tick's OOM victims as rows for KILLED_TICKS ticks; age the others."""
        self.killed = {pid: (row, ticks - 1) for pid, (row, ticks) in self.killed.items() if ticks > 1}
        kmsg = self.joined.get(KMSG)
        if kmsg is None:
            return
        now_ns = self.shown_wall_ns()
        for event in kmsg.oom_kills:
            if event.pid is None:
                continue
            last = next((p for p in previous.processes if p.pid == event.pid), None) if previous is not None else None
            self.killed[event.pid] = (killed_view(event, last, kmsg.wall_ns_of(event, now_ns) / 1e9), KILLED_TICKS)

    def show_unavailable(self, reason: str, remedy: str) -> None:
        super().show_unavailable(reason, remedy)
        self.border_subtitle = f"[$error]{escape(reason)}[/]" + (f": {escape(remedy)}" if remedy else "")

    def _update_title(self) -> None:
        view: ProcessesView | None = self.view
        if view is None:
            return
        table = self.table
        # processes, not the thread rows H adds among them
        shown = sum(1 for p, _ in table.rows if p.thread_of is None)
        total = len(view.processes)
        title = f"Processes {total}"
        if table.filter_text or table.user_filter is not None:
            title = f"Processes {shown} of {total}"
        if table.filter_text:
            title += f" matching '{table.filter_text}'"
        if table.user_filter is not None:
            title += f", user {table.user_filter}"
        if table.tree_mode:
            title += " (tree)"
        if table.show_threads:
            title += f"  threads {len(table.threads)}"
        if table.tagged:
            title += f"  {len(table.tagged)} tagged"
        if table.sticky and table.selected is not None:
            title += f"  following {table.selected.pid}"
        self.border_title = title
        self.border_subtitle = f"{view.unreadable} unreadable" if view.unreadable else ""

    # filter and search

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter", Input)

    @property
    def search_input(self) -> Input:
        return self.query_one("#search", Input)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("kill", "tag", "untag_all"):
            # Only processes running now can be signalled: a recording's or
            # fixed frames' pids may belong to anything on this box today.
            # In replay, space then plays and pauses.
            return self.app.shows_live
        if action == "scroll_command":
            # In replay the arrows step through the frames.
            return not self.app.replaying
        focused = self.screen.focused
        filtering = focused is self.filter_input
        searching = focused is self.search_input
        if action == "filter":
            # A `/` typed in the filter or the search is part of it (paths).
            return not (filtering or searching)
        if action == "search":
            return not filtering
        if action == "keep_filter":
            return filtering
        if action == "end_search":
            return searching
        if action == "clear_filter":
            return filtering or (not searching and bool(self.table.filter_text))
        return True

    def action_filter(self) -> None:
        self.add_class("-filtering")
        filter_input = self.filter_input
        filter_input.value = self.table.filter_text
        filter_input.cursor_position = len(filter_input.value)
        # Now, not as Widget.focus does (after the keys already queued).
        self.screen.set_focus(filter_input)

    def action_keep_filter(self) -> None:
        self.screen.set_focus(self.table)
        # Keys typed before Enter may still wait in the input's queue: look
        # at what they made of the filter after them.
        self.filter_input.call_later(self._show_filter)

    def action_clear_filter(self) -> None:
        self.screen.set_focus(self.table)
        self.filter_input.call_later(self._clear_filter)

    def _clear_filter(self) -> None:
        self.filter_input.value = ""
        self.table.set_filter("")
        self._show_filter()

    def _show_filter(self) -> None:
        # The input stays on screen while typing and while it holds a filter.
        self.set_class(self.screen.focused is self.filter_input or bool(self.filter_input.value), "-filtering")

    def action_search(self) -> None:
        search = self.search_input
        if self.screen.focused is search:
            self.table.search(search.value, after=True)
            return
        self.add_class("-searching")
        search.value = ""
        self.screen.set_focus(search)

    def action_end_search(self) -> None:
        self.screen.set_focus(self.table)
        self.search_input.call_later(self.remove_class, "-searching")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.input is self.search_input:
            self.table.search(event.value)
        else:
            self.table.set_filter(event.value)

    def action_scroll_command(self, cells: int) -> None:
        self.table.scroll_last_column(cells)

    def action_toggle_threads(self) -> None:
        table = self.table
        table.show_threads = not table.show_threads
        if not self.app.read_threads(table.show_threads) and table.show_threads and not table.threads:
            self.notify("no threads in what is shown: recorded while threads were hidden (H)", severity="warning")
        table.reordered()
        self._update_title()

    def action_choose_user(self) -> None:
        counts = Counter(p.user for p in self.table.processes)
        options = [("", f"all users ({len(self.table.processes)})")]
        options += [(user, f"{user} ({n})") for user, n in sorted(counts.items())]

        def chosen(user: str | None) -> None:
            if user is not None:
                self.table.set_user(user or None)

        self.app.push_screen(ChoiceScreen("Show the processes of", options, self.table.user_filter or ""), chosen)

    def on_line_table_reordered(self, event: ProcessTable.Reordered) -> None:
        event.stop()
        self._update_title()

    # signals

    def action_tag(self) -> None:
        self.table.toggle_tag()
        self._update_title()

    def action_untag_all(self) -> None:
        self.table.untag_all()
        self._update_title()

    def action_kill(self) -> None:
        table = self.table
        chosen = list(table.tagged.values())
        if not chosen and table.selected is not None:
            chosen = [table.selected]
        # A thread's row stands for its process: a signal goes to a process.
        processes = {p.pid: p for p in table.processes}
        by_pid: dict[int, ProcessView] = {}
        for view in chosen:
            process = view if view.thread_of is None else processes.get(view.thread_of)
            if process is not None:
                by_pid[process.pid] = process
        targets = list(by_pid.values())
        if not targets:
            return
        labels = [f"{p.pid} ({p.name}) of {p.user}: {p.command}" for p in targets]

        def send(signum: int | None) -> None:
            if signum is None:
                return
            name = signal.Signals(signum).name
            sent, failed = [], []
            for p in targets:
                try:
                    send_signal(p.pid, p.start_time_ns, signum)
                except NotThatProcess as exc:
                    failed.append(f"{p.name}: {exc}")
                except PermissionError:
                    failed.append(f"not allowed to send {name} to {p.pid} ({p.name}): run orac as its owner or root")
                else:
                    sent.append(f"{p.pid} ({p.name})")
            table.untag_all()
            self._update_title()
            if sent:
                self.notify(f"sent {name} to {', '.join(sent)}")
            if failed:
                self.notify("\n".join(failed), severity="error" if not sent else "warning")

        self.app.push_screen(SignalScreen(labels), send)
