"""The probe protocol every data source follows, and how a probe says it cannot run."""

from __future__ import annotations

from typing import ClassVar, Protocol, TypeVar

S = TypeVar("S", covariant=True)


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

    def __str__(self) -> str:
        return f"{self.reason}: {self.remedy}" if self.remedy else self.reason


class Probe(Protocol[S]):
    """A data source sampled once per tick on the collector thread.

    `sample()` returns raw counters only (values that grow, or counts for the
    interval) in a frozen dataclass; rates are derived from two samples so that
    live and replayed frames go through the same code.
    """

    name: ClassVar[str]

    def start(self) -> None:
        """Prepare the probe; raises ProbeUnavailable when it cannot run."""

    def sample(self) -> S:
        """Read the source once."""

    def stop(self) -> None:
        """Release whatever `start` acquired."""
