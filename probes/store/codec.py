"""Compact bytes for a Frame's samples, and back, for any sample dataclass.

Probes return frozen dataclasses of ints, floats, strings, None, bools,
bytes, tuples, lists, dicts and more dataclasses. This module encodes them
generically, with no code per probe; the recording store (probes.store)
adds zstd and SQLite around it.

Why deltas
----------
At 1 s with 500 processes a frame is ~75 KB of values, and a plain encoding
even after zstd is ~10 KB: as much as atop. But from one second to the next
most processes do not change at all, and those that do change two or three
counters. So a frame is normally encoded against the frame before it (its
*reference*): an unchanged value is one byte, an unchanged run of processes
is one copy instruction, a changed process carries only its changed fields,
and a counter carries its increase. Every `keyframe_every` frames (and at the
start) a *keyframe* is encoded against nothing, so a reader reaches any frame
by decoding at most that many frames from the keyframe before it.

Measured with `benchmarks/recording` (after zstd): on a VM with 520 mostly
idle processes, a delta frame is ~150-250 bytes and a keyframe ~2.5-5 KB,
~490 bytes a frame on average against atop's 11.7 KB; on a synthetic busy
server (560 processes of which 40 change each second, 16 CPUs), ~0.9 KB and
~25 KB, ~1.5 KB a frame.

Schema
------
Field names are not in the frames. Each dataclass type gets a small integer
id, and the file stores once, per type: the id, a stable name
("probes.processes:ProcSample" by default, or one given to `register_type`)
and its field names in order. A probe's sample type may declare
`SCHEMA_VERSION: ClassVar[int]` (default 1); bump it when a field changes
meaning. A reader refuses a newer version, and reads an older one when every
recorded field still exists (fields added since must have defaults). Type
names are resolved to classes through `register_type` or by importing the
named module, which must be in the `probes` package, so a file can never
make orac import anything else.

Value encoding
--------------
One tag byte, then the value. Varints are unsigned LEB128; "zigzag" maps
signed ints onto them (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...).

====  ==========  =======================================================
tag   name        followed by
====  ==========  =======================================================
0x00  NONE
0x01  FALSE
0x02  TRUE
0x03  INT         zigzag varint (any size)
0x04  FLOAT       IEEE 754 double, big-endian (exact round trip)
0x05  STR         varint byte length, UTF-8
0x06  BYTES       varint length, the bytes
0x07  TUPLE       varint count, the items
0x08  LIST        varint count, the items
0x09  DICT        varint count, then key and value for each entry
0x0A  DATACLASS   varint type id, then each field's value in field order
0x0B  INT_TUPLE   varint count, then a zigzag varint per item: a tuple of
                  ints (a histogram) in half the bytes of TUPLE
====  ==========  =======================================================

Only inside a delta, where the decoder has the reference value at the same
place in the previous frame:

====  ==========  =======================================================
0x10  SAME        nothing: the value equals the reference
0x11  INT_DELTA   zigzag varint of (value - reference)
0x12  PATCH       (a dataclass of the reference's type) varint bit mask of
                  changed fields (bit i = field i), then each changed
                  field's value encoded against the reference's field
0x13  SEQ_DELTA   (a tuple or list, of the reference's type) varint count,
                  then operations until that many items are produced:
                  0 COPY  zigzag(j - e), varint k: items j..j+k-1 of the
                          reference
                  1 PATCH zigzag(j - e), a value against reference item j
                  2 NEW   a value against nothing
                  where e, the expected j, is one past the last reference
                  item used (0 at first). The reference item for a
                  dataclass is the one with the same first field (a pid),
                  else the one at the same position.
0x14  DICT_DELTA  varint count, then each entry's key and its value
                  against the reference's value for that key (a key the
                  reference lacks is encoded against nothing)
====  ==========  =======================================================

A frame's payload is the value `(samples, unavailable)`: two dicts, probe
name -> sample, and probe name -> (reason, remedy).
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _TUPLE, _LIST, _DICT, _DATACLASS, _INT_TUPLE = range(12)
_SAME, _INT_DELTA, _PATCH, _SEQ_DELTA, _DICT_DELTA = range(0x10, 0x15)
_OP_COPY, _OP_PATCH, _OP_NEW = range(3)

_DOUBLE = struct.Struct(">d")

# A file names types, and resolving a name imports its module: only orac's
# own probe modules may be imported that way.
_IMPORTABLE_PACKAGE = "probes"


class CodecError(ValueError):
    """Samples that cannot be encoded, or bytes that cannot be decoded.

    The message is one line, fit to show a user after "orac: error: ".
    """


# --- the type registry --------------------------------------------------------

_registered: dict[str, type] = {}
_names: dict[type, str] = {}


def register_type(cls: type, name: str | None = None) -> None:
    """Record `cls` under `name` (default "module:qualname").

    Needed only for a dataclass outside the probes package, or to keep
    reading old recordings after a class is renamed or moved: register the
    class again under its old name. The first name registered for a class is
    the one new recordings use.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"{cls!r} is not a dataclass")
    name = name or default_type_name(cls)
    known = _registered.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"type name {name!r} is already registered for {known!r}")
    _registered[name] = cls
    _names.setdefault(cls, name)


def default_type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def type_name(cls: type) -> str:
    """The name a recording stores for `cls`."""
    name = _names.get(cls)
    if name is not None:
        return name
    name = default_type_name(cls)
    if cls.__module__.partition(".")[0] != _IMPORTABLE_PACKAGE or "<locals>" in cls.__qualname__:
        raise CodecError(f"cannot record {name}: it is outside the probes package; register it with register_type()")
    return name


def resolve_type(name: str) -> type:
    """The class for a stored type name; CodecError when this orac has none."""
    cls = _registered.get(name)
    if cls is not None:
        return cls
    module_name, _, qualname = name.partition(":")
    if module_name.partition(".")[0] != _IMPORTABLE_PACKAGE or not qualname:
        raise CodecError(f"unknown sample type {name!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise CodecError(f"unknown sample type {name!r}") from None
    if not isinstance(obj, type) or not dataclasses.is_dataclass(obj):
        raise CodecError(f"unknown sample type {name!r}")
    return obj


def schema_version(cls: type | None) -> int:
    """A sample type's schema version: its SCHEMA_VERSION class variable, or 1."""
    return int(getattr(cls, "SCHEMA_VERSION", 1)) if cls is not None else 1


def init_fields(cls: type) -> tuple[str, ...]:
    """The fields a dataclass is built from (those passed to __init__)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


# --- schema rows, as a file stores them ----------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TypeRow:
    """One stored type: its id in this file, name and recorded field names."""

    type_id: int
    name: str
    fields: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeRow:
    """One recorded probe: the name of its sample type ("" if not a dataclass)
    and that type's schema version."""

    probe: str
    type_name: str
    version: int


class TypeTable:
    """The writer's side of the schema: assigns type ids as types appear.

    Rows that are new since the last `mark_saved` come out of `unsaved()`, so
    the store writes them in the same transaction as the first frame that
    uses them; when that transaction fails they are offered again.
    """

    def __init__(self) -> None:
        self._ids: dict[type, tuple[int, tuple[str, ...]]] = {}
        self._rows: list[TypeRow] = []
        self._probes: dict[str, ProbeRow] = {}
        self._saved_types = 0
        self._saved_probes: dict[str, ProbeRow] = {}

    def type_id(self, cls: type) -> tuple[int, tuple[str, ...]]:
        known = self._ids.get(cls)
        if known is not None:
            return known
        fields = init_fields(cls)
        entry = (len(self._rows), fields)
        self._rows.append(TypeRow(entry[0], type_name(cls), fields))
        self._ids[cls] = entry
        return entry

    def note_probe(self, probe: str, sample: Any) -> None:
        cls = type(sample)
        is_dc = dataclasses.is_dataclass(sample)
        self._probes[probe] = ProbeRow(probe, type_name(cls) if is_dc else "", schema_version(cls) if is_dc else 1)

    def unsaved(self) -> tuple[list[TypeRow], list[ProbeRow]]:
        probes = [row for name, row in self._probes.items() if self._saved_probes.get(name) != row]
        return self._rows[self._saved_types :], probes

    def mark_saved(self) -> None:
        self._saved_types = len(self._rows)
        self._saved_probes = dict(self._probes)


class Schema:
    """The reader's side: stored types resolved to this orac's classes.

    Built when a recording is opened, so an unknown probe or a newer schema is
    reported before any frame is read.
    """

    def __init__(self, types: Iterable[TypeRow], probes: Iterable[ProbeRow]) -> None:
        self._builders: dict[int, tuple[type, tuple[str, ...], Callable[[list[Any]], Any]]] = {}
        self._by_class: dict[type, tuple[type, tuple[str, ...], Callable[[list[Any]], Any]]] = {}
        type_probe: dict[str, str] = {}
        for probe in probes:
            if probe.type_name:
                type_probe[probe.type_name] = probe.probe
                try:
                    cls = resolve_type(probe.type_name)
                except CodecError:
                    raise CodecError(
                        f"it has probe {probe.probe!r} ({probe.type_name}), which this orac does not know; upgrade orac"
                    ) from None
                current = schema_version(cls)
                if probe.version > current:
                    raise CodecError(
                        f"it has probe {probe.probe!r} at schema version {probe.version} from a newer orac"
                        f" (this one reads up to {current}); upgrade orac"
                    )
        for row in types:
            try:
                cls = resolve_type(row.name)
            except CodecError:
                owner = type_probe.get(row.name)
                where = f"probe {owner!r} ({row.name})" if owner else f"sample type {row.name}"
                raise CodecError(f"it has {where}, which this orac does not know; upgrade orac") from None
            entry = (cls, row.fields, _builder(cls, row.fields))
            self._builders[row.type_id] = entry
            self._by_class[cls] = entry

    def build(self, type_id: int) -> tuple[type, tuple[str, ...], Callable[[list[Any]], Any]]:
        """(class, recorded field names, builder from values in that order) of a type id."""
        try:
            return self._builders[type_id]
        except KeyError:
            raise CodecError(f"frame data is corrupt (type id {type_id} is not in the file)") from None

    def build_for(self, cls: type) -> tuple[type, tuple[str, ...], Callable[[list[Any]], Any]]:
        """The same for a class, to patch a value decoded earlier."""
        try:
            return self._by_class[cls]
        except KeyError:
            raise CodecError(f"frame data is corrupt ({cls.__qualname__} is not in the file)") from None


def _builder(cls: type, recorded: tuple[str, ...]) -> Callable[[list[Any]], Any]:
    current = init_fields(cls)
    if recorded == current:
        return lambda values: cls(*values)
    # An older layout: build by name, so fields added since take their defaults.
    missing = set(recorded) - set(current)
    if missing:
        raise CodecError(
            f"{default_type_name(cls)} was recorded with field {sorted(missing)[0]!r}, which this orac does not have"
        )
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    absent = required - set(recorded)
    if absent:
        raise CodecError(f"{default_type_name(cls)} was recorded without field {sorted(absent)[0]!r}")
    return lambda values: cls(**dict(zip(recorded, values)))


# --- encoding -------------------------------------------------------------------


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


def _put_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


_first_fields: dict[type, str | None] = {}


def _match_key(item: Any) -> Any:
    """What identifies a dataclass item across frames: its first field (a
    pid), when that is a plain int or str.

    Only a hint for a smaller delta: a wrong match costs bytes, not
    correctness, since the encoding names the reference item it used.
    """
    cls = type(item)
    try:
        first = _first_fields[cls]
    except KeyError:
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        first = _first_fields[cls] = fields[0].name if fields else None
    if first is None:
        return None
    value = getattr(item, first)
    return (cls, value) if type(value) in (int, str) else None


class Encoder:
    """Encodes values against references, registering types in `types`."""

    def __init__(self, types: TypeTable) -> None:
        self.types = types
        self.out = bytearray()

    def encode_frame(self, samples: Mapping[str, Any], unavailable: Mapping[str, tuple[str, str]],
                     reference: tuple[Mapping[str, Any], Mapping[str, tuple[str, str]]] | None) -> bytes:
        """The payload of one frame; a keyframe when `reference` is None."""
        for probe, sample in samples.items():
            self.types.note_probe(probe, sample)
        self.out = bytearray()
        value = (dict(samples), dict(unavailable))
        if reference is None:
            self.value(value)
        else:
            self.delta(value, (dict(reference[0]), dict(reference[1])))
        return bytes(self.out)

    def value(self, v: Any) -> None:
        """Encode `v` on its own."""
        out = self.out
        t = type(v)
        if t is int:
            out.append(_INT)
            _put_varint(out, _zigzag(v))
        elif t is str:
            data = v.encode()
            out.append(_STR)
            _put_varint(out, len(data))
            out += data
        elif v is None:
            out.append(_NONE)
        elif t is float:
            out.append(_FLOAT)
            out += _DOUBLE.pack(v)
        elif t is tuple and v and all(type(item) is int for item in v):
            out.append(_INT_TUPLE)
            _put_varint(out, len(v))
            for item in v:
                _put_varint(out, _zigzag(item))
        elif t is tuple or t is list:
            out.append(_TUPLE if t is tuple else _LIST)
            _put_varint(out, len(v))
            for item in v:
                self.value(item)
        elif t is dict:
            out.append(_DICT)
            _put_varint(out, len(v))
            for key, item in v.items():
                self.value(key)
                self.value(item)
        elif t is bool:
            out.append(_TRUE if v else _FALSE)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            type_id, fields = self.types.type_id(t)
            out.append(_DATACLASS)
            _put_varint(out, type_id)
            for name in fields:
                self.value(getattr(v, name))
        else:
            self._other(v)

    def _other(self, v: Any) -> None:
        # Subclasses of the plain types (an IntEnum, a str subclass) are
        # stored as the plain type, which compares equal on the way back.
        if isinstance(v, (bytes, bytearray)):
            self.out.append(_BYTES)
            _put_varint(self.out, len(v))
            self.out += v
        elif isinstance(v, bool):
            self.value(bool(v))
        elif isinstance(v, int):
            self.value(int(v))
        elif isinstance(v, float):
            self.value(float(v))
        elif isinstance(v, str):
            self.value(str(v))
        elif isinstance(v, tuple):
            # a NamedTuple (a reason and remedy): read back as the plain tuple
            self.value(tuple(v))
        else:
            raise CodecError(f"cannot record a value of type {type(v).__qualname__}")

    def delta(self, v: Any, ref: Any) -> None:
        """Encode `v` against the reference value `ref`."""
        if _same(v, ref):
            self.out.append(_SAME)
            return
        t = type(v)
        if t is not type(ref):
            self.value(v)
        elif t is int:
            diff = _zigzag(v - ref)
            plain = _zigzag(v)
            if diff < plain:
                self.out.append(_INT_DELTA)
                _put_varint(self.out, diff)
            else:
                self.out.append(_INT)
                _put_varint(self.out, plain)
        elif t is tuple and v and all(type(item) is int for item in v):
            # Counts for the interval (a histogram) change all over: a
            # sequence delta would be as long as the tuple itself.
            self.value(v)
        elif t is tuple or t is list:
            self._seq_delta(v, ref)
        elif t is dict:
            self._dict_delta(v, ref)
        elif dataclasses.is_dataclass(v):
            self._patch(v, ref)
        else:
            self.value(v)

    def _patch(self, v: Any, ref: Any) -> None:
        _, fields = self.types.type_id(type(v))
        mask = 0
        changed = []
        for i, name in enumerate(fields):
            new, old = getattr(v, name), getattr(ref, name)
            if not _same(new, old):
                mask |= 1 << i
                changed.append((new, old))
        self.out.append(_PATCH)
        _put_varint(self.out, mask)
        for new, old in changed:
            self.delta(new, old)

    def _seq_delta(self, v: tuple[Any, ...] | list[Any], ref: tuple[Any, ...] | list[Any]) -> None:
        out = self.out
        out.append(_SEQ_DELTA)
        _put_varint(out, len(v))
        by_key: dict[Any, int] = {}
        for j, item in enumerate(ref):
            key = _match_key(item)
            if key is not None:
                by_key.setdefault(key, j)
        expected = 0
        n_ref = len(ref)
        n = len(v)
        i = 0
        while i < n:
            item = v[i]
            key = _match_key(item)
            j = by_key.get(key, -1) if key is not None else -1
            if j < 0 and i < n_ref and type(ref[i]) is type(item):
                j = i
            if j < 0:
                out.append(_OP_NEW)
                self.value(item)
                i += 1
            elif _same(item, ref[j]):
                k = 1
                while i + k < n and j + k < n_ref and _same(v[i + k], ref[j + k]):
                    k += 1
                out.append(_OP_COPY)
                _put_varint(out, _zigzag(j - expected))
                _put_varint(out, k)
                i += k
                expected = j + k
            else:
                out.append(_OP_PATCH)
                _put_varint(out, _zigzag(j - expected))
                self.delta(item, ref[j])
                i += 1
                expected = j + 1

    def _dict_delta(self, v: dict[Any, Any], ref: dict[Any, Any]) -> None:
        out = self.out
        out.append(_DICT_DELTA)
        _put_varint(out, len(v))
        for key, item in v.items():
            self.value(key)
            if key in ref:
                self.delta(item, ref[key])
            else:
                self.value(item)


def _same(a: Any, b: Any) -> bool:
    """Whether `a` can be stored as "the same as reference `b`".

    Equal is not enough: True == 1 and 0.0 == -0.0, yet the decoded value
    must be the one recorded, type and sign included.
    """
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    if t is float:
        return _DOUBLE.pack(a) == _DOUBLE.pack(b)
    if t is tuple or t is list:
        return len(a) == len(b) and all(map(_same, a, b))
    if t is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    get = _field_getters.get(t)
    if get is None:
        if not dataclasses.is_dataclass(t):
            return bool(a == b)
        get = _field_getters[t] = _fields_getter(init_fields(t))
    return _same_values(get(a), get(b))


def _same_values(va: tuple[Any, ...], vb: tuple[Any, ...]) -> bool:
    # Every row of every probe is compared with its reference each frame:
    # equality and the values' types are checked in C first, and only
    # floats and containers, whose == can hide a difference, one by one.
    if va != vb:
        return False
    types = tuple(map(type, va))
    if types != tuple(map(type, vb)):
        return False
    return _SCALARS.issuperset(types) or all(map(_same, va, vb))


def _fields_getter(fields: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(fields) > 1:
        return operator.attrgetter(*fields)
    return lambda v: tuple(getattr(v, name) for name in fields)


# types whose == is sameness: equal values of one of these types decode alike
_SCALARS = frozenset({int, str, bytes, bool, type(None)})
_field_getters: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


# --- decoding -------------------------------------------------------------------


class Decoder:
    """Decodes a payload made by `Encoder`, given the same reference."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.data = b""
        self.pos = 0

    def decode_frame(self, payload: bytes,
                     reference: tuple[Mapping[str, Any], Mapping[str, tuple[str, str]]] | None,
                     ) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
        """(samples, unavailable) of one frame; `reference` as it was encoded."""
        self.data = payload
        self.pos = 0
        try:
            if reference is None:
                value = self.value()
            else:
                value = self.delta((dict(reference[0]), dict(reference[1])))
            if self.pos != len(payload):
                raise CodecError("frame data has trailing bytes")
        except CodecError:
            raise
        except (IndexError, ValueError, TypeError, KeyError, AttributeError, struct.error, RecursionError):
            # Only a damaged file or a bug gets here; either way the frame
            # cannot be trusted, and the user needs one line, not a traceback.
            raise CodecError("frame data is corrupt") from None
        if type(value) is not tuple or len(value) != 2 or type(value[0]) is not dict or type(value[1]) is not dict:
            raise CodecError("frame data is corrupt")
        return value[0], value[1]

    def _varint(self) -> int:
        data = self.data
        pos = self.pos
        b = data[pos]
        pos += 1
        n = b & 0x7F
        shift = 7
        while b & 0x80:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
        self.pos = pos
        return n

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise CodecError("frame data is truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk


    def value(self) -> Any:
        """Decode a value encoded on its own."""
        data = self.data
        tag = data[self.pos]
        self.pos += 1
        if tag == _INT:
            return _unzigzag(self._varint())
        if tag == _STR:
            return self._take(self._varint()).decode()
        if tag == _DATACLASS:
            _, fields, build = self.schema.build(self._varint())
            return build([self.value() for _ in fields])
        if tag == _NONE:
            return None
        if tag == _FLOAT:
            return _DOUBLE.unpack(self._take(8))[0]
        if tag == _TUPLE:
            return tuple([self.value() for _ in range(self._varint())])
        if tag == _INT_TUPLE:
            return tuple([_unzigzag(self._varint()) for _ in range(self._varint())])
        if tag == _LIST:
            return [self.value() for _ in range(self._varint())]
        if tag == _DICT:
            result = {}
            for _ in range(self._varint()):
                key = self.value()
                result[key] = self.value()
            return result
        if tag == _TRUE:
            return True
        if tag == _FALSE:
            return False
        if tag == _BYTES:
            return self._take(self._varint())
        raise CodecError(f"frame data is corrupt (tag {tag:#x} where a value starts)")

    def delta(self, ref: Any) -> Any:
        """Decode a value encoded against `ref`."""
        tag = self.data[self.pos]
        if tag < _SAME:
            return self.value()
        self.pos += 1
        if tag == _SAME:
            return ref
        if tag == _INT_DELTA and type(ref) is int:
            return ref + _unzigzag(self._varint())
        if tag == _PATCH and dataclasses.is_dataclass(ref):
            return self._patch(ref)
        if tag == _SEQ_DELTA and type(ref) in (tuple, list):
            return self._seq_delta(ref)
        if tag == _DICT_DELTA and type(ref) is dict:
            return self._dict_delta(ref)
        raise CodecError("frame data is corrupt (a delta does not fit the frame before it)")

    def _patch(self, ref: Any) -> Any:
        _, fields, build = self.schema.build_for(type(ref))
        mask = self._varint()
        values = []
        for i, name in enumerate(fields):
            old = getattr(ref, name)
            values.append(self.delta(old) if mask >> i & 1 else old)
        if mask >> len(fields):
            raise CodecError("frame data is corrupt (a patch names fields the type does not have)")
        return build(values)

    def _seq_delta(self, ref: tuple[Any, ...] | list[Any]) -> tuple[Any, ...] | list[Any]:
        n = self._varint()
        items: list[Any] = []
        expected = 0
        while len(items) < n:
            op = self.data[self.pos]
            self.pos += 1
            if op == _OP_NEW:
                items.append(self.value())
                continue
            j = expected + _unzigzag(self._varint())
            if j < 0:
                raise IndexError(j)
            if op == _OP_COPY:
                k = self._varint()
                if k == 0 or j + k > len(ref):
                    raise IndexError(j + k)
                items.extend(ref[j : j + k])
                expected = j + k
            elif op == _OP_PATCH:
                items.append(self.delta(ref[j]))
                expected = j + 1
            else:
                raise CodecError(f"frame data is corrupt (sequence operation {op:#x})")
        if len(items) != n:
            raise CodecError("frame data is corrupt (a sequence is longer than its count)")
        return tuple(items) if type(ref) is tuple else items

    def _dict_delta(self, ref: dict[Any, Any]) -> dict[Any, Any]:
        result = {}
        for _ in range(self._varint()):
            key = self.value()
            result[key] = self.delta(ref[key]) if key in ref else self.value()
        return result
