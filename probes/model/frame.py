"""A Frame: every probe's raw sample taken at one tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from probes.contract import Unavailable


@dataclass(frozen=True, slots=True)
class Frame:
    """Raw samples of one tick.

    `wall_ns` places the frame in time for people (timelines, recordings);
    `mono_ns` measures the interval between frames, since the wall clock can
    jump. It is taken before the probes run; a sample that computes rates
    also carries its own `mono_ns`, when its counters were read, and its
    rates divide by the time between those (probes.model.views.covered_s).
    """

    wall_ns: int
    mono_ns: int
    samples: Mapping[str, Any]
    # probe name -> why it could not run, so a replay shows the same
    # explanation the live screen did.
    unavailable: Mapping[str, Unavailable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A recording stores each reason as a plain (reason, remedy) pair.
        if not all(type(why) is Unavailable for why in self.unavailable.values()):
            fixed = {name: Unavailable(*why) for name, why in self.unavailable.items()}
            object.__setattr__(self, "unavailable", fixed)
