"""The probe contract: what a probe is, how it says it cannot run, and the views of a tick.

A probe module defines its raw sample, its view, its derive and its probe
class, and ends with one `ProbeSpec` naming them; probes.registry lists the
specs. Everything that needs to know which probes exist (the collector,
derive_frame, `orac doctor`, `orac dump`, the panes) learns it from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

S = TypeVar("S")
V = TypeVar("V")
S_co = TypeVar("S_co", covariant=True)


class Unavailable(NamedTuple):
    """Why a probe cannot run, in words a user understands, and what to do about it."""

    reason: str
    remedy: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.remedy}" if self.remedy else self.reason


class ProbeUnavailable(Exception):
    """A probe cannot run here.

    Args:
        reason: What is missing, in words a user understands ("no root").
        remedy: What to do about it, ideally a command ("run `sudo orac`").
        absent: Nothing the probe watches exists here (no NVIDIA GPU in
            the machine): nothing is wrong, there is just nothing to show.
    """

    def __init__(self, reason: str, remedy: str = "", *, absent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.remedy = remedy
        self.absent = absent

    @property
    def unavailable(self) -> Unavailable:
        return Unavailable(self.reason, self.remedy)

    def __str__(self) -> str:
        return str(self.unavailable)


class Probe(Protocol[S_co]):
    """A data source sampled once per tick on the collector thread.

    `sample()` returns raw counters only (values that grow, or counts for the
    interval) in a frozen dataclass; rates are derived from two samples so that
    live and replayed frames go through the same code.
    """

    name: ClassVar[str]

    def start(self) -> None:
        """Prepare the probe; raises ProbeUnavailable when it cannot run."""

    def sample(self) -> S_co:
        """Read the source once."""

    def stop(self) -> None:
        """Release whatever `start` acquired."""


@dataclass(frozen=True, eq=False)
class ProbeSpec(Generic[S, V]):
    """One probe as the rest of orac knows it.

    `derive(prev, curr, dt_s)` turns two raw samples `dt_s` seconds apart
    into the view panes show. `make` builds the probe for the live screen,
    headless recording and `orac doctor`; None for probes that only a
    drill-down starts, for one process (it builds them itself).
    """

    name: str
    sample_type: type[S]
    view_type: type[V]
    derive: Callable[[S, S, float], V]
    make: Callable[[], Probe[S]] | None = None


class Views(Mapping[str, Any]):
    """The views of one tick, by probe: `views.get(SYSCALLS)` is a SyscallsView or None.

    Also a read-only mapping by probe name, for what handles every probe
    alike (dump, feeding panes).
    """

    def __init__(self, views: Mapping[str, Any] | None = None, failed: Mapping[str, Unavailable] | None = None) -> None:
        self._views: dict[str, Any] = dict(views or {})
        # probes whose view could not be derived from their samples (a bug
        # in orac, said on their pane rather than ending the collector)
        self.failed: Mapping[str, Unavailable] = dict(failed or {})

    def get(self, spec: ProbeSpec[Any, V]) -> V | None:  # type: ignore[override]
        view = self._views.get(spec.name)
        return view if isinstance(view, spec.view_type) else None

    def __getitem__(self, name: str) -> Any:
        return self._views[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"Views({self._views!r})"
