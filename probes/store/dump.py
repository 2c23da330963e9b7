"""`orac dump`: a recording's derived values as JSON Lines or CSV, for scripts."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from probes.contract import Views
from probes.model.frame import Frame
from probes.model.verdict import as_json, verdict
from probes.model.views import derive_frame
from probes.sources.block_io import BLOCK_IO, BlockIoRate
from probes.sources.cgroups import CGROUPS
from probes.sources.disks import DISKS, DiskRates, DiskView
from probes.sources.filesystems import FILESYSTEMS, FilesystemView
from probes.sources.kmsg import KMSG
from probes.sources.network import NETWORK
from probes.sources.processes import PROCESSES
from probes.sources.system import SYSTEM
from probes.sources.tcp import TCP, TCP_STATES
from probes.sources.tcp_events import TCP_EVENTS
from probes.store.reader import Recording

_plain_fields: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """A view as JSON-ready dicts and lists (dataclasses.asdict, minus its
    deep copies: ~10x faster at hundreds of processes a frame)."""
    t = type(value)
    if t in (int, float, str, bool) or value is None:
        return value
    if t is tuple or t is list:
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    fields = _plain_fields.get(t)
    if fields is None:
        fields = _plain_fields[t] = tuple(f.name for f in dataclasses.fields(value))
    return {name: _plain(getattr(value, name)) for name in fields}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Nested dicts, dataclasses and tuples as "a.b.0" columns."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), item) for i, item in enumerate(value))
    else:
        out[prefix] = value
        return
    for key, item in items:
        _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)


_DISK_FIELDS = ("name", "parent", "kind", "major", "minor", "dm_name", "in_flight", "idle", "saturated")
_RATE_FIELDS = tuple(f.name for f in dataclasses.fields(DiskRates))
_FILESYSTEM_FIELDS = tuple(f.name for f in dataclasses.fields(FilesystemView))
# The histogram is left to json: 32 columns a row would bury the figures.
_BLOCKIO_RATE_FIELDS = tuple(f.name for f in dataclasses.fields(BlockIoRate) if f.name != "latency_hist")
_BLOCKIO_FIELDS = ("kind", "device", "pid", "comm", *_BLOCKIO_RATE_FIELDS)


def _blockio_rate(rate: BlockIoRate) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(rate, name) for name in _BLOCKIO_RATE_FIELDS}
    for name in ("p50_latency_bucket", "p99_latency_bucket"):
        bucket = record[name]
        # A bucket's low end: the most a log2 histogram can say of a percentile
        # in one cell (the bucket is [low, 2 x low)).
        record[name] = bucket.low_ns if bucket is not None else None
    return record


def _disk_record(disk: DiskView) -> dict[str, Any]:
    record = {name: getattr(disk, name) for name in _DISK_FIELDS}
    # A device with no rate for the interval (new, or re-created) has empty
    # rate cells, not zeros.
    record.update({name: getattr(disk.rates, name) if disk.rates is not None else None for name in _RATE_FIELDS})
    return record


# Every state gets a column, so the header does not depend on which states
# the first frame happened to have; a state with no socket is 0 (the probe
# counts every line of /proc/net/tcp and tcp6).
_STATE_COLUMNS = tuple(dict.fromkeys((*TCP_STATES.values(), "UNKNOWN")))


def _system_rows(views: Views) -> list[dict[str, Any]]:
    system = views.get(SYSTEM)
    if system is None:
        return []
    flat: dict[str, Any] = {}
    _flatten(_plain(system), "", flat)
    return [flat]


def _process_rows(views: Views) -> list[dict[str, Any]]:
    processes = views.get(PROCESSES)
    return [_plain(p) for p in processes.processes] if processes is not None else []


def _interface_rows(views: Views) -> list[dict[str, Any]]:
    network = views.get(NETWORK)
    return [_plain(i) for i in network.interfaces] if network is not None else []


def _tcp_rows(views: Views) -> list[dict[str, Any]]:
    tcp = views.get(TCP)
    if tcp is None:
        return []
    flat: dict[str, Any] = {}
    _flatten({k: v for k, v in _plain(tcp).items() if k != "states"}, "", flat)
    for state in _STATE_COLUMNS:
        flat[f"states.{state}"] = None if tcp.states is None else tcp.states.get(state, 0)
    return [flat]


def _cgroup_rows(views: Views) -> list[dict[str, Any]]:
    cgroups = views.get(CGROUPS)
    return [{"version": cgroups.version, **_plain(c)} for c in cgroups.cgroups] if cgroups is not None else []


def _event_rows(views: Views) -> list[dict[str, Any]]:
    kmsg = views.get(KMSG)
    return [_plain(e) for e in kmsg.new_events] if kmsg is not None else []


def _disk_rows(views: Views) -> list[dict[str, Any]]:
    disks = views.get(DISKS)
    return [_disk_record(d) for disk in disks.disks for d in (disk, *disk.partitions)] if disks is not None else []


def _filesystem_rows(views: Views) -> list[dict[str, Any]]:
    filesystems = views.get(FILESYSTEMS)
    if filesystems is None:
        return []
    return [{name: getattr(f, name) for name in _FILESYSTEM_FIELDS} for f in filesystems.filesystems]


def _blockio_rows(views: Views) -> list[dict[str, Any]]:
    blockio = views.get(BLOCK_IO)
    if blockio is None:
        return []
    return [
        *({"kind": "device", "device": d.device, **_blockio_rate(d.rate)} for d in blockio.devices),
        *({"kind": "process", "pid": p.pid, "comm": p.comm, **_blockio_rate(p.rate)} for p in blockio.processes),
    ]


_TCPEVENTS_FIELDS = (
    "kind", "family", "saddr", "sport", "daddr", "dport", "state", "pid", "comm", "retransmits", "retransmits_per_s",
    "connects", "connects_per_s", "connect_failed_per_s", "closed_from_established_per_s", "accepted_per_s",
    "mean_latency_ns", "p50_latency_bucket", "p99_latency_bucket",
)


def _tcpevents_rows(views: Views) -> list[dict[str, Any]]:
    events = views.get(TCP_EVENTS)
    if events is None:
        return []
    rows: list[dict[str, Any]] = [{"kind": "connection", **_plain(c)} for c in events.connections]
    for p in events.processes:
        record = {"kind": "process", **_plain(p)}
        for name in ("p50_latency_bucket", "p99_latency_bucket"):
            bucket = getattr(p, name)
            # the bucket's low end, as blockio's table gives it
            record[name] = bucket.low_ns if bucket is not None else None
        rows.append(record)
    return rows


# --table name -> the CSV rows of one frame's views
TABLES = {
    "processes": _process_rows,
    "system": _system_rows,
    "disks": _disk_rows,
    "filesystems": _filesystem_rows,
    "blockio": _blockio_rows,
    "tcpevents": _tcpevents_rows,
    "interfaces": _interface_rows,
    "tcp": _tcp_rows,
    "cgroups": _cgroup_rows,
    "events": _event_rows,
}


def _csv_header(table: str, records: list[dict[str, Any]]) -> list[str]:
    # Fixed for the tables whose rows may be absent from a frame (no disk
    # yet), so a file's header never depends on its first frame.
    if table == "disks":
        return ["time", "index", *_DISK_FIELDS, *_RATE_FIELDS]
    if table == "filesystems":
        return ["time", "index", *_FILESYSTEM_FIELDS]
    if table == "blockio":
        return ["time", "index", *_BLOCKIO_FIELDS]
    if table == "tcpevents":
        return ["time", "index", *_TCPEVENTS_FIELDS]
    return list(records[0])


def dump(
    recording: Recording,
    format: str = "json",
    from_wall_ns: int | None = None,
    to_wall_ns: int | None = None,
    out: TextIO | None = None,
    *,
    table: str = "processes",
) -> int:
    """Write derived values of the frames between two times; return the rows written.

    Each frame's views are derived from the frame before it, as on screen,
    so the first frame of a recording (which has nothing before it) is not
    written.

    format="json": one JSON object per frame and line, shaped like `orac
    snapshot --json`: "index", "time" (Unix seconds), "interval_s",
    "system" (the cpu probe's view), "processes" (list, in pid order),
    "unavailable" (probe -> {"reason", "remedy"}), "disks" (list of whole
    disks, each with its "partitions") and "filesystems" (list) where
    recorded, any other probe's view under the probe's name, and "verdict"
    (probes.model.verdict.as_json: the USE verdict that was true then).

    format="csv": a header, then rows that start with time and index; an
    unknown value is an empty cell. table="processes": one row per process
    per frame (the process view's fields: pid ... command); "system": one
    row per frame with the system view flattened into columns
    ("cpu_total.busy_percent", "cpus.0.busy_percent", "load_avg.0",
    "pressure.io.some_avg10", ...); "interfaces": one row per network
    interface per frame (name, rx_bytes_per_s ...); "disks": one row per
    block device per frame (whole disks and, after each, its partitions with
    `parent` set: name ... saturated, then iostat -x's figures,
    reads_per_s ... flush_await_ms); "filesystems": one row per filesystem
    per frame (mount_point ... near_full, df's figures); "blockio": the eBPF
    block latency probe's rows, one per device (kind "device") then one per
    issuing process (kind "process", pid and comm set) per frame:
    requests_per_s ... mean_latency_ns, and the p50 and p99 latency buckets
    by their low end in ns; "tcp": one row per
    frame (active_opens_per_s ..., "sockets.total", "states.ESTAB" ...);
    "cgroups": one row per cgroup with a CPU quota per frame (version,
    path, quota_cpus, throttled_percent ...); "events": one row per kernel
    log record logged in the frame's interval (seq, ts_us, level, kind,
    message, pid, comm, cgroup, xid ...).

    Raises:
        ValueError: unknown format or table.
        RecordingError: the recording is damaged where it is read.
    """
    if format not in ("json", "csv"):
        raise ValueError(f"unknown format {format!r}; choose json or csv")
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose {', '.join(TABLES)}")
    out = out if out is not None else sys.stdout
    wanted = recording.index_range(from_wall_ns, to_wall_ns)
    if not wanted:
        return 0
    # Start one frame early: the first wanted frame's rates need it.
    first = max(0, wanted.start - 1)
    rows = 0
    writer: csv.DictWriter[str] | None = None
    prev: Frame | None = None
    for index, frame in recording.iter_frames(range(first, wanted.stop)):
        views = derive_frame(prev, frame) if prev is not None else Views()
        interval_s = (frame.mono_ns - prev.mono_ns) / 1e9 if prev is not None else None
        prev = frame
        if index < wanted.start or not views:
            continue
        time_s = frame.wall_ns / 1e9
        if format == "json":
            data: dict[str, Any] = {"index": index, "time": time_s, "interval_s": interval_s}
            system, processes = views.get(SYSTEM), views.get(PROCESSES)
            data["system"] = _plain(system) if system is not None else None
            data["processes"] = _plain(processes.processes) if processes is not None else []
            data.update({name: _plain(view) for name, view in views.items() if name not in (SYSTEM.name, PROCESSES.name)})
            disks, filesystems = views.get(DISKS), views.get(FILESYSTEMS)
            if disks is not None:
                data[DISKS.name] = _plain(disks.disks)
            if filesystems is not None:
                data[FILESYSTEMS.name] = _plain(filesystems.filesystems)
            data["unavailable"] = {
                name: {"reason": r, "remedy": f} for name, (r, f) in {**frame.unavailable, **views.failed}.items()
            }
            data["verdict"] = as_json(verdict(views, wall_ns=frame.wall_ns))
            out.write(json.dumps(data, separators=(",", ":")) + "\n")
            rows += 1
            continue
        records = [{"time": time_s, "index": index, **row} for row in TABLES[table](views)]
        if records and writer is None:
            writer = csv.DictWriter(out, fieldnames=_csv_header(table, records), restval="", extrasaction="ignore",
                                    lineterminator="\n")
            writer.writeheader()
        if writer is not None:
            writer.writerows(records)
            rows += len(records)
    return rows
