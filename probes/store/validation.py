"""Checking decoded samples against their dataclasses' type hints.

A recording can come from anywhere, and its checksums only prove that
nothing changed since it was written, not that its writer was orac. So a
decoded frame is either well-formed for this orac, or it is reported
corrupt: every field of every sample must have its annotated type (an
`int` field an int and not a bool, a `tuple[float, float, float]` three
floats), and numbers must be finite, non-negative (every figure a probe
records is a counter, a size, a time or an id; SIGNED_FIELDS lists the
exceptions) and below 2**64, as kernel counters are; ids below Linux's
PID_MAX_LIMIT (RANGES).

Frames are mostly made of the objects of the frame before them (see
probes.codec's deltas), so a validator remembers what it checked one frame
to the next and checks only what is new.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from probes.store.codec import CodecError

# Fields whose value may be below zero: a syscall number (-1 when the kernel
# could not tell one) and a temperature.
SIGNED_FIELDS = frozenset({"nr", "temperature_c"})
LIMIT = 2**64
# Linux's PID_MAX_LIMIT: process and thread ids never reach it.
PID_LIMIT = 4 * 1024 * 1024
# Fields with a narrower range than any counter, by name: [low, high).
RANGES = {name: (0, PID_LIMIT) for name in ("pid", "ppid", "tid", "target_pid", "focus_pid")}

_hints: dict[type, tuple[tuple[str, Any], ...]] = {}


def field_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, resolved type hint) of each field a dataclass is built from."""
    known = _hints.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _hints[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
    return known


class SampleValidator:
    """Checks frames in order; `check` raises CodecError naming the first bad value."""

    def __init__(self, probe_types: Mapping[str, type]) -> None:
        # probe name -> the sample class the file says it recorded
        self._probe_types = dict(probe_types)
        # id -> object, for the objects checked in the last frame; holding
        # them keeps their ids from being reused by new objects.
        self._seen: dict[int, Any] = {}
        self._next: dict[int, Any] = {}

    def check(self, samples: Mapping[str, Any], unavailable: Mapping[str, Any]) -> None:
        self._next = {}
        for probe, sample in samples.items():
            cls = self._probe_types.get(probe)
            if cls is None:
                raise CodecError(f"it has samples of probe {probe!r} of a kind orac does not record")
            self._value(sample, cls, probe, "")
        for probe, why in unavailable.items():
            if type(probe) is not str or not isinstance(why, tuple) or len(why) != 2 or not all(type(s) is str for s in why):
                raise CodecError(f"what it says could not run ({probe!r}) is not a reason and a remedy")
        self._seen = self._next

    def _value(self, value: Any, hint: Any, where: str, field: str) -> None:
        if hint is Any:
            return
        origin = typing.get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            self._union(value, typing.get_args(hint), where, field)
        elif hint is int:
            if type(value) is not int:
                raise _wrong(where, value, "a whole number")
            low, high = RANGES.get(field, (-LIMIT if field in SIGNED_FIELDS else 0, LIMIT))
            if not low <= value < high:
                raise _wrong(where, value, "in range")
        elif hint is float:
            if type(value) is not float and type(value) is not int:
                raise _wrong(where, value, "a number")
            if not math.isfinite(value) or not (-LIMIT if field in SIGNED_FIELDS else 0) <= value < LIMIT:
                raise _wrong(where, value, "a finite number in range")
        elif hint is str or hint is bool or hint is bytes:
            if type(value) is not hint:
                raise _wrong(where, value, hint.__name__)
        elif hint is type(None):
            if value is not None:
                raise _wrong(where, value, "None")
        elif origin is tuple:
            self._tuple(value, typing.get_args(hint), where, field)
        elif origin is list:
            if type(value) is not list:
                raise _wrong(where, value, "a list")
            (item,) = typing.get_args(hint)
            for i, v in enumerate(value):
                self._value(v, item, f"{where}[{i}]", field)
        elif origin is dict or origin is Mapping:
            if type(value) is not dict:
                raise _wrong(where, value, "a mapping")
            key_hint, item_hint = typing.get_args(hint)
            for key, v in value.items():
                self._value(key, key_hint, f"{where} key", "")
                self._value(v, item_hint, f"{where}[{key!r}]", field)
        elif origin is Sequence:
            if type(value) is not tuple and type(value) is not list:
                raise _wrong(where, value, "a sequence")
            (item,) = typing.get_args(hint)
            for i, v in enumerate(value):
                self._value(v, item, f"{where}[{i}]", field)
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            self._dataclass(value, hint, where)
        else:
            raise CodecError(f"{where} has a type this orac cannot check ({hint!r})")

    def _union(self, value: Any, options: tuple[Any, ...], where: str, field: str) -> None:
        errors = []
        for option in options:
            try:
                self._value(value, option, where, field)
                return
            except CodecError as exc:
                errors.append(exc)
        raise errors[-1]

    def _tuple(self, value: Any, args: tuple[Any, ...], where: str, field: str) -> None:
        if type(value) is not tuple:
            raise _wrong(where, value, "a tuple")
        if len(args) == 2 and args[1] is Ellipsis:
            item = args[0]
            for i, v in enumerate(value):
                self._value(v, item, f"{where}[{i}]", field)
            return
        if len(value) != len(args):
            raise _wrong(where, value, f"{len(args)} items")
        for i, (v, item) in enumerate(zip(value, args)):
            self._value(v, item, f"{where}[{i}]", field)

    def _dataclass(self, value: Any, cls: type, where: str) -> None:
        if type(value) is not cls:
            raise _wrong(where, value, f"a {cls.__name__}")
        key = id(value)
        if self._seen.get(key) is value or self._next.get(key) is value:
            self._next[key] = value
            return
        for name, hint in field_hints(cls):
            self._value(getattr(value, name), hint, f"{where}.{name}", name)
        self._next[key] = value


def _wrong(where: str, value: Any, expected: str) -> CodecError:
    shown = repr(value)
    if len(shown) > 24:
        shown = shown[:21] + "..."
    return CodecError(f"{where} is {shown}, not {expected}")
