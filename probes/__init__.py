"""orac's data sources. Usable without the UI: this package never imports textual."""

from __future__ import annotations

from .base import Probe, ProbeUnavailable
from .frame import Frame

__all__ = ["Frame", "Probe", "ProbeUnavailable"]
