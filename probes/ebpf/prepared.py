"""Programs compiled before they are needed, kept loaded and detached: a drill-down attaches them in milliseconds.

Compiling is what makes a trace slow to start (clang: seconds idle, tens of
seconds on a loaded box); loading the compiled program is quick and
attaching it a few system calls. So a drill-down's programs take their
target process from a map, not from a compile-time option, and are
compiled once, aside, when orac starts (`prepare`). A drill-down takes
one (`take`), attaches it, and gives it back detached and emptied when it
closes, for the next one. A detached program costs no event anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from probes.contract import ProbeUnavailable
from probes.ebpf.bpf import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH
from probes.ebpf.checks import check_ebpf
from probes.ebpf.programs import BpfProgram, LoadedProgram, load_program, wait_for_programs

BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_LRU_HASH = 9
# Maps whose entries belong to one use of a program; arrays hold state that
# the programs and probes rewrite before reading (generation, target, slots).
EMPTIED_MAP_TYPES = frozenset({BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_STACK_TRACE, BPF_MAP_TYPE_LRU_HASH})


class ProgramPool:
    """Loaded, detached programs by what was compiled (text and options)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[BpfProgram, LoadedProgram] = {}
        self._loading: dict[BpfProgram, threading.Event] = {}

    def prepare(
        self, programs: Iterable[BpfProgram], tracefs: bool = True, then: Callable[[], None] | None = None
    ) -> threading.Thread:
        """Compile and load `programs` one after another on a thread of their own, then run `then` there; returns it.

        One that fails (no root, no headers) is left out: `take` then
        compiles it and raises the reason where a probe can show it.
        """
        wanted = []
        with self._lock:
            for program in programs:
                if program not in self._ready and program not in self._loading:
                    self._loading[program] = threading.Event()
                    wanted.append(program)
        thread = threading.Thread(target=self._load_all, args=(wanted, tracefs, then), name="orac-prepare", daemon=True)
        thread.start()
        return thread

    def _load_all(self, programs: list[BpfProgram], tracefs: bool, then: Callable[[], None] | None) -> None:
        try:
            check_ebpf(tracefs=tracefs)
        except ProbeUnavailable:
            self._done(programs, {})
            return
        for program in programs:
            try:
                loaded = {program: load_program(program, attach=False)}
            except ProbeUnavailable:
                loaded = {}
            self._done([program], loaded)
        if then is not None:
            then()

    def _done(self, programs: list[BpfProgram], loaded: dict[BpfProgram, LoadedProgram]) -> None:
        with self._lock:
            self._ready.update(loaded)
            for program in programs:
                self._loading.pop(program).set()

    def take(self, program: BpfProgram) -> LoadedProgram:
        """The program loaded and detached: a prepared one, once it is ready, or one compiled now.

        Raises:
            ProbeUnavailable: it does not compile or load here.
        """
        with self._lock:
            loading = self._loading.get(program)
        if loading is not None:
            loading.wait()
        while True:
            with self._lock:
                ready = self._ready.pop(program, None)
            if ready is None:
                return load_program(program, attach=False)
            try:
                _empty(ready)
            except OSError:
                ready.close()
                continue
            return ready

    def give_back(self, program: BpfProgram, loaded: LoadedProgram) -> None:
        """Keep `loaded`, detached now, for the next `take` (which empties its maps: this may run on the UI thread)."""
        loaded.detach()
        with self._lock:
            kept = self._ready.setdefault(program, loaded)
        if kept is not loaded:
            loaded.close()


def _empty(loaded: LoadedProgram) -> None:
    """Delete what an earlier use left in the maps of a detached program."""
    # A program that ran as it was detached may still be counting.
    wait_for_programs()
    for table in loaded.maps.values():
        if table.info.type in EMPTIED_MAP_TYPES:
            table.clear()


# The drill-down's programs, prepared at orac's start.
PROGRAMS = ProgramPool()
