"""What every eBPF probe does alike: load its program aside, switch generations, count its losses, stop.

A probe subclasses EbpfProbe and says only what is its own: the program it
compiles (`program`), the maps it reads (`open_maps`) and how it turns them
into a sample (`sample`, which calls `next_generation` and `lost_in_interval`).
Those that count one process's threads one by one (the drill-down's focus)
subclass FocusingEbpfProbe.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from probes.contract import ProbeUnavailable
from probes.ebpf.bpf import BpfMap
from probes.ebpf.checks import check_ebpf
from probes.ebpf.maps import (
    ARRAY_INDEX,
    ThreadFocus,
    advance_generation,
    read_percpu_counters,
)
from probes.ebpf.prepared import PROGRAMS
from probes.ebpf.programs import (
    BpfProgram,
    LoadedProgram,
    load_and_open,
    unload_program,
)

# Every aggregate key of orac's programs ends with the generation (u32) it
# was counted in; see orac.bpf.h.
GENERATION = struct.Struct("=I")


class PerCpuCounters:
    """A per-CPU array of u64 counters, read as how much each grew since the last read."""

    def __init__(self, table: BpfMap, n: int) -> None:
        self._table = table
        self._before = read_percpu_counters(table, n)

    def take(self) -> list[int]:
        now = read_percpu_counters(self._table, len(self._before))
        grown = [a - b for a, b in zip(now, self._before, strict=True)]
        self._before = now
        return grown


class EbpfProbe(ABC):
    """The lifecycle of a probe whose program counts into generation-keyed maps.

    A probe of the whole machine compiles and attaches its program as it
    starts, for the session. One of a single process (a drill-down's) takes
    its program from probes.ebpf.prepared, compiled beforehand with the
    target in a map word (`target`, index 0; 0 traces nobody), so it starts
    in milliseconds, and gives it back detached when it stops.

    Args:
        target_pid: trace only this process (None: the whole machine).
    """

    name: ClassVar[str]
    # compiling the program takes up to seconds: the collector starts it aside
    slow_start: ClassVar[bool] = True
    # Classic tracepoints attach through tracefs; raw tracepoints and perf
    # events do not need it mounted.
    uses_tracefs: ClassVar[bool] = False
    # The program's `lost` per-CPU array, index by index (its enum lost_reason).
    kernel_lost_reasons: ClassVar[tuple[str, ...]]

    def __init__(self, target_pid: int | None = None) -> None:
        self.target_pid = target_pid
        self._bpf: LoadedProgram | None = None
        self._generation = 0
        # what a targeted probe took from PROGRAMS, to give back
        self._prepared: BpfProgram | None = None

    @abstractmethod
    def program(self) -> BpfProgram:
        """What `start` compiles (also for `--print-bpf`)."""

    @abstractmethod
    def open_maps(self, bpf: LoadedProgram) -> None:
        """The program is loaded: take hold of its maps (a KeyError or OSError unloads it again)."""

    def check(self) -> None:  # noqa: B027 - optional: most probes need nothing more
        """What must hold before compiling, beyond eBPF itself; raises ProbeUnavailable."""

    def start(self) -> None:
        check_ebpf(tracefs=self.uses_tracefs)
        self.check()
        if self.target_pid is None:
            # Compiled and loaded in a child process: orac holds only descriptors.
            self._bpf = load_and_open(self.program(), self._open)
            return
        program = self.program()
        bpf = PROGRAMS.take(program)
        try:
            self._open(bpf)
            self.target_word(bpf)(self.target_pid)
            bpf.attach()
        except (KeyError, OSError) as exc:
            bpf.close()
            raise ProbeUnavailable(f"{program.source_name} loaded, but does not attach here: {exc}") from None
        self._bpf = bpf
        self._prepared = program

    def _open(self, bpf: LoadedProgram) -> None:
        self._generation = 0
        self._lost = PerCpuCounters(bpf["lost"], len(self.kernel_lost_reasons))
        self._generation_word = self.generation_word(bpf)
        self.open_maps(bpf)

    def target_word(self, bpf: LoadedProgram) -> Callable[[int], None]:
        """How to tell a targeted program its process: index 0 of the `target` array."""
        table = bpf["target"]
        return lambda tgid: table.update(ARRAY_INDEX.pack(0), ARRAY_INDEX.pack(tgid))

    def generation_word(self, bpf: LoadedProgram) -> Callable[[int], None]:
        """How to tell the programs the current generation: index 0 of the `generation` array."""
        table = bpf["generation"]
        return lambda generation: table.update(ARRAY_INDEX.pack(0), GENERATION.pack(generation))

    def stop(self) -> None:
        if self._bpf is None:
            return
        prepared, self._prepared = self._prepared, None
        try:
            if prepared is not None:
                self.target_word(self._bpf)(0)
                PROGRAMS.give_back(prepared, self._bpf)
            else:
                unload_program(self._bpf)
        except OSError:
            unload_program(self._bpf)
        self._bpf = None

    @property
    def running(self) -> bool:
        return self._bpf is not None

    def require_running(self) -> None:
        if self._bpf is None:
            raise ProbeUnavailable(f"the {self.name} probe is not running", "start it first")

    def attachment_fds(self) -> tuple[int, ...]:
        """The descriptors that keep its programs attached (none while stopped), for orac's own cost."""
        return tuple(a.fd for a in self._bpf.attachments) if self._bpf is not None else ()

    def next_generation(self) -> Callable[[bytes], bool]:
        """Move new events to the next generation and wait until none counts into the old ones.

        Returns the test a map key passes when its generation is finished
        (every one but the new: leftovers of an older tick too), whose
        entries can be read and deleted without losing an update.
        """
        self._generation = advance_generation(self._generation, self._generation_word)
        active = GENERATION.pack(self._generation)
        return lambda key: key[-GENERATION.size :] != active

    @property
    def generation(self) -> int:
        return self._generation

    def lost_in_interval(self) -> dict[str, int]:
        """The program's losses since the last call, by reason."""
        return dict(zip(self.kernel_lost_reasons, self._lost.take(), strict=True))


class FocusingEbpfProbe(EbpfProbe):
    """An eBPF probe that can also count one process's threads one by one (a drill-down's `focus`)."""

    def __init__(self, target_pid: int | None = None) -> None:
        super().__init__(target_pid)
        self._focus = ThreadFocus(target_pid)

    def stop(self) -> None:
        self._focus.close()
        super().stop()

    @property
    def focus_pid(self) -> int | None:
        """The process whose threads are counted one by one."""
        return self._focus.pid

    def focus(self, pid: int | None) -> None:
        """Count `pid`'s threads one by one from now on (None: nobody's)."""
        self._focus.set(pid)
