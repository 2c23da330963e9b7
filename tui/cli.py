"""The `orac` command.

Headless commands (snapshot, doctor) never import textual, so they work
where no terminal UI can run (cron, systemd, a pipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from probes.host.malloc import return_freed_memory
from probes.model.collector import DEFAULT_HISTORY_S, MAX_INTERVAL_S, MIN_INTERVAL_S
from probes.sources.profile import (
    DEFAULT_FREQUENCY_HZ,
)
from probes.sources.profile import (
    MAX_FREQUENCY_HZ as MAX_PROFILE_HZ,
)
from probes.sources.profile import (
    MIN_FREQUENCY_HZ as MIN_PROFILE_HZ,
)

if TYPE_CHECKING:
    from probes.config import Config
    from probes.contract import Probe


class UsageError(Exception):
    pass


class RecordingFailure(Exception):
    """A recording that cannot be read or written: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"interval must be a number of seconds, not {text!r}") from None
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"interval must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds, not {text}"
        )
    return value


def profile_hz(text: str) -> int:
    if not text.isdigit() or not MIN_PROFILE_HZ <= int(text) <= MAX_PROFILE_HZ:
        raise argparse.ArgumentTypeError(
            f"the profile rate must be a whole number of Hz from {MIN_PROFILE_HZ} to {MAX_PROFILE_HZ}, not {text!r}"
        )
    return int(text)


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# A year: longer is a mistake (or "forever", which is no --duration at all).
MAX_DURATION_S = 366 * 86400


def duration(text: str) -> float:
    """"90", "90s", "10m", "2h", "1d" -> seconds."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in DURATION_UNITS_S else (text, "s")
    try:
        value = float(number) * DURATION_UNITS_S[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 10m or 2h, not {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"the duration must be more than 0 and at most 366d (leave it out to record until Ctrl-C), not {text!r}"
        )
    return value


def system_wide_probe_names() -> list[str]:
    from probes.registry import PROBES

    return [spec.name for spec in PROBES if spec.make is not None]


def history(text: str) -> float:
    """--history: a duration, or 0 to keep nothing."""
    if text.strip() in ("0", "0s", "0m"):
        return 0.0
    try:
        return duration(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a duration like 10m or 1h, or 0 to keep none, not {text!r}") from None


def live_parser() -> Parser:
    parser = Parser(prog="orac", description="Live performance triage for Linux.")
    parser.add_argument("--interval", type=interval, default=1.0, help="seconds between samples (0.2 to 60)")
    parser.add_argument(
        "--probes", default=None,
        help=f"comma-separated probes to run: {','.join(system_wide_probe_names())} (default: all)",
    )
    parser.add_argument(
        "--profile-hz", type=profile_hz, default=DEFAULT_FREQUENCY_HZ,
        help=f"samples a second on each CPU of a drill-down's on-CPU profile (default {DEFAULT_FREQUENCY_HZ})",
    )
    parser.add_argument(
        "--history", type=history, default=DEFAULT_HISTORY_S,
        help="how much of the past to keep in memory, for R to record from (default 10m; 0: none)",
    )
    parser.add_argument(
        "--incident-dir", type=Path, default=Path("orac-incidents"), help="where `!` makes incident bundles",
    )
    add_ui_options(parser)
    parser.epilog = (
        "other commands: orac snapshot [--json], orac doctor, orac record -o FILE, "
        "orac replay FILE, orac dump FILE, orac incident -o DIR"
    )
    return parser


def add_ui_options(parser: Parser) -> None:
    parser.add_argument(
        "--no-redact", action="store_true",
        help="show secrets in command lines (password=, --token ...) on screen, in screenshots and in recordings",
    )
    parser.add_argument("--theme", default=None, help="orac-dark (default), orac-light, orac-high-contrast, ...")
    parser.add_argument(
        "--config", type=Path, default=None,
        help="the config file (default $XDG_CONFIG_HOME/orac/config.toml, ~/.config/orac/config.toml)",
    )
    parser.add_argument(
        "--screenshot-dir", type=Path, default=Path("orac-screenshots"), help="where `s` saves screenshots"
    )


def record_parser() -> Parser:
    parser = Parser(prog="orac record", description="Record samples to a file, headless (no terminal needed).")
    parser.add_argument("-o", "--output", type=Path, default=None, help="the recording file to create")
    parser.add_argument(
        "--daemon", action="store_true",
        help="record on into a directory of files that rotate and expire (--dir; see README), as a service would",
    )
    # Defaults (probes.store.rotation's) are filled in by record_daemon: importing
    # the store here would load what every `orac` run then carries in memory.
    parser.add_argument("--dir", type=Path, default=None, help="--daemon's directory (default /var/log/orac as root)")
    parser.add_argument("--rotate-size", type=size, default=None,
                        help="--daemon: begin a new file past this size (default 64M; K, M, G)")
    parser.add_argument("--rotate-every", type=duration, default=None,
                        help="--daemon: begin a new file this often too (1h, 6h; default once a day)")
    parser.add_argument("--keep", type=duration, default=None, help="--daemon: delete files older than this (default 7d)")
    parser.add_argument("--keep-size", type=size, default=None,
                        help="--daemon: delete the oldest files while all exceed this (default 1G)")
    parser.add_argument("--interval", type=interval, default=1.0, help="seconds between samples (0.2 to 60)")
    parser.add_argument("--duration", type=duration, default=None, help="stop after this long (90s, 10m, 2h); default: until Ctrl-C")
    parser.add_argument("--probes", default=None, help="comma-separated probes to record (default: all that can run)")
    parser.add_argument("--no-redact", action="store_true", help="keep secrets in command lines (password=, --token ...)")
    parser.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def size(text: str) -> int:
    """"64M", "1G", "500K", "1048576" -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 64M, 1G or 500K, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the size must be more than 0, not {text!r}")
    return value


def incident_parser() -> Parser:
    parser = Parser(
        prog="orac incident",
        description="Record an incident bundle headless: a folder with the recording, summary.md and a .tar.zst of both.",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the folder to create (new, or empty)")
    parser.add_argument("--duration", type=duration, default=60.0, help="how long to record (default 60s; 10m, 1h)")
    parser.add_argument("--interval", type=interval, default=1.0, help="seconds between samples (0.2 to 60)")
    parser.add_argument("--probes", default=None, help="comma-separated probes to record (default: all that can run)")
    parser.add_argument("--no-redact", action="store_true", help="keep secrets in command lines (password=, --token ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def replay_parser() -> Parser:
    parser = Parser(prog="orac replay", description="Open a recording in the same UI as live.")
    parser.add_argument("file", type=Path, help="a recording, or a directory of them (orac record --daemon's)")
    parser.add_argument(
        "--at", default=None,
        help="open at this time: 14:05, \"3m ago\", an ISO date; with a directory, in the file that holds it",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="1 to 60 times real time")
    parser.add_argument("--paused", action="store_true", help="open paused on the first frame")
    add_ui_options(parser)
    return parser


def dump_parser() -> Parser:
    from probes.store.dump import TABLES

    parser = Parser(prog="orac dump", description="Print a recording's derived values for scripts.")
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--format", choices=("json", "csv"), default="json",
        help="json: JSON Lines, one object per frame and line (default); csv: a header, then rows",
    )
    parser.add_argument(
        "--table", choices=tuple(TABLES), default="processes",
        help="CSV: a row per process, per frame (system, tcp), per block device, per filesystem, per network"
        " interface, per cgroup with a CPU quota or per kernel log record",
    )
    parser.add_argument("--from", dest="from_", default=None, help="start: +10m, HH:MM[:SS], an ISO date or Unix seconds")
    parser.add_argument("--to", default=None, help="end, in the same forms")
    return parser


def snapshot_parser() -> Parser:
    parser = Parser(prog="orac snapshot", description="Print one sample's derived values and exit.")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument("--interval", type=interval, default=0.5, help="seconds between the two samples rates need")
    parser.add_argument("--top", type=count, default=20, help="how many processes, busiest first (0: all)")
    return parser


COMMANDS = ("snapshot", "doctor", "record", "replay", "dump", "incident")
DOCTOR_EPILOG = (
    "exit status: 0 when every probe that applies here can run (a machine without an NVIDIA GPU needs no GPU "
    "probe); 1 when one that applies cannot; 2 for a mistake on the command line"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Before the threads that allocate start (their arenas are made then).
    return_freed_memory()
    try:
        if args and not args[0].startswith("-") and args[0] not in COMMANDS:
            raise UsageError(
                f"unknown command {args[0]!r}; the commands are {', '.join(COMMANDS)} (none starts the live UI)"
            )
        if args and args[0] == "snapshot":
            return snapshot(snapshot_parser().parse_args(args[1:]))
        if args and args[0] == "doctor":
            parser = Parser(prog="orac doctor", description="Check which probes can run here.", epilog=DOCTOR_EPILOG)
            parser.add_argument(
                "--print-bpf", action="store_true", help="print the eBPF programs as they are compiled, and load none"
            )
            if parser.parse_args(args[1:]).print_bpf:
                return print_bpf()
            return doctor()
        if args and args[0] == "record":
            return record(record_parser().parse_args(args[1:]))
        if args and args[0] == "replay":
            return replay(replay_parser().parse_args(args[1:]))
        if args and args[0] == "incident":
            return incident(incident_parser().parse_args(args[1:]))
        if args and args[0] == "dump":
            return dump(dump_parser().parse_args(args[1:]))
        return live(live_parser().parse_args(args))
    except UsageError as exc:
        print(f"orac: error: {exc}", file=sys.stderr)
        return 2
    except RecordingFailure as exc:
        print(f"orac: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def chosen_probes(names: str | None, probes: list[Any]) -> list[Any]:
    """The probes named in a --probes list, or all of them."""
    from probes.registry import select_probes

    if not names:
        return probes
    try:
        return select_probes([n.strip() for n in names.split(",") if n.strip()], probes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def ui_config(options: argparse.Namespace) -> Config:
    """The config file's settings; one that cannot be used is said in one line, and
    orac starts with the defaults and leaves that file alone."""
    from probes.config import Config, ConfigError, default_path, load

    try:
        return load(options.config)
    except ConfigError as exc:
        print(f"orac: config {exc}; starting with the defaults", file=sys.stderr)
        return Config(options.config or default_path(), writable=False)


def ui_theme(options: argparse.Namespace, config: Config) -> str:
    from textual.theme import BUILTIN_THEMES

    from themes import DEFAULT_THEME, THEMES

    names = ", ".join([*THEMES, *sorted(BUILTIN_THEMES)])
    if config.theme is not None and config.theme not in THEMES and config.theme not in BUILTIN_THEMES:
        print(f"orac: config {config.path}: unknown theme {config.theme!r} ({names}); starting with {DEFAULT_THEME}",
              file=sys.stderr)
        config.theme = None
    theme = options.theme or config.theme or DEFAULT_THEME
    if theme not in THEMES and theme not in BUILTIN_THEMES:
        raise UsageError(f"unknown theme {theme!r}; choose one of: {names}")
    if not sys.stdout.isatty():
        raise UsageError("the UI needs a terminal; for scripts use `orac snapshot --json` or `orac dump`")
    return theme


def apply_config(probes: Sequence[Probe[Any]], config: Config) -> None:
    """What the config file says of the probes: [filesystems] virtual."""
    from probes.sources.filesystems import FilesystemsProbe

    for probe in probes:
        if isinstance(probe, FilesystemsProbe):
            probe.include_virtual = config.virtual_filesystems


def live(options: argparse.Namespace) -> int:
    from probes.model.collector import Collector
    from probes.registry import all_probes

    probes = chosen_probes(options.probes, all_probes())
    config = ui_config(options)
    theme = ui_theme(options, config)
    apply_config(probes, config)
    from .app import OracApp

    chosen = {p.name for p in probes}
    left_out = [p.name for p in all_probes() if p.name not in chosen]
    redact = not options.no_redact
    kept = None
    if options.history:
        from probes.store.flight import FlightRecorder

        kept = FlightRecorder(options.history)
    collector = Collector(probes, options.interval, left_out=left_out, redact=redact, history=kept)
    from .drilldown import prepare_drill_down

    # Compiled now, aside: opening a drill-down then only attaches them.
    prepare_drill_down(chosen, options.profile_hz)
    app = OracApp(
        collector, theme=theme, screenshot_dir=options.screenshot_dir, incident_dir=options.incident_dir,
        profile_hz=options.profile_hz, redact=redact,
        config=config,
    )
    app.run()
    return app.return_code or 0


def record(options: argparse.Namespace) -> int:
    from probes.registry import all_probes
    from probes.store.format import RecordingError
    from probes.store.headless import RecordStats
    from probes.store.headless import record as record_frames

    probes = chosen_probes(options.probes, all_probes())
    if options.daemon:
        return record_daemon(options, probes)
    if options.output is None:
        raise UsageError("say where: -o FILE, or --daemon [--dir DIR] to record on into rotating files")

    def progress(stats: RecordStats) -> None:
        # One line rewritten in place on a terminal; nothing under systemd or nohup.
        if not options.quiet and sys.stderr.isatty():
            print(f"\rrecording {stats.path}: {stats.frames} frames, {stats.file_bytes / 1024:.0f} KiB, "
                  f"{stats.elapsed_s:.0f} s (Ctrl-C stops)", end="", file=sys.stderr, flush=True)

    try:
        stats = record_frames(
            options.output, probes, options.interval, options.duration,
            redact=not options.no_redact, overwrite=options.force, on_progress=progress,
        )
    except RecordingError as exc:
        raise RecordingFailure(str(exc)) from None
    if not options.quiet:
        end = "\n" if sys.stderr.isatty() else ""
        print(f"{end}recorded {stats.frames} frames in {stats.path} ({stats.file_bytes / 1024:.0f} KiB)", file=sys.stderr)
    return 0


def record_daemon(options: argparse.Namespace, probes: list[Any]) -> int:
    import os

    from probes.store.format import RecordingError
    from probes.store.headless import record_rotating
    from probes.store.rotation import DAEMON_DIR, DEFAULT_KEEP_BYTES, DEFAULT_KEEP_S, DEFAULT_ROTATE_BYTES, Policy

    if options.output is not None:
        raise UsageError("--daemon writes files of its own in --dir, not -o FILE")
    directory = options.dir
    if directory is None:
        if os.geteuid() != 0:
            raise UsageError(f"--daemon needs --dir DIR (the default, {DAEMON_DIR}, is root's)")
        directory = DAEMON_DIR
    policy = Policy(
        options.rotate_size or DEFAULT_ROTATE_BYTES, options.rotate_every, options.keep or DEFAULT_KEEP_S,
        options.keep_size or DEFAULT_KEEP_BYTES,
    )

    def switched(path: Path, removed: list[Path]) -> None:
        # A line per file: what a service's log (journalctl) should say.
        gone = f"; removed {', '.join(p.name for p in removed)} (retention)" if removed else ""
        print(f"orac: recording to {path}{gone}", file=sys.stderr, flush=True)

    try:
        recorder = record_rotating(
            directory, probes, options.interval, policy, redact=not options.no_redact, on_switch=switched,
            duration_s=options.duration,
        )
    except RecordingError as exc:
        raise RecordingFailure(str(exc)) from None
    print(f"orac: recorded {recorder.frames} frames in {recorder.files} files in {directory}", file=sys.stderr)
    return 0


def incident(options: argparse.Namespace) -> int:
    from probes.registry import all_probes
    from probes.store.format import RecordingError
    from probes.store.headless import RecordStats
    from probes.store.headless import record as record_frames
    from probes.store.incident import RECORDING_NAME, finish_bundle
    from probes.store.private_files import PrivateDirectory

    probes = chosen_probes(options.probes, all_probes())
    folder: Path = options.output
    if folder.is_dir() and any(folder.iterdir()):
        raise UsageError(f"{folder} is not empty; name a new folder")
    try:
        PrivateDirectory(folder, create=True).close()
    except OSError as exc:
        raise RecordingFailure(f"cannot make {folder}: {exc.strerror or exc}") from None

    def progress(stats: RecordStats) -> None:
        if not options.quiet and sys.stderr.isatty():
            print(f"\rincident {folder}: {stats.frames} frames, {stats.elapsed_s:.0f} of {options.duration:.0f} s"
                  " (Ctrl-C ends it early)", end="", file=sys.stderr, flush=True)

    try:
        stats = record_frames(
            folder / RECORDING_NAME, probes, options.interval, options.duration,
            redact=not options.no_redact, on_progress=progress,
        )
        archive = finish_bundle(folder)
    except RecordingError as exc:
        raise RecordingFailure(str(exc)) from None
    except OSError as exc:
        raise RecordingFailure(f"cannot write the bundle in {folder}: {exc.strerror or exc}") from None
    if not options.quiet:
        end = "\n" if sys.stderr.isatty() else ""
        print(f"{end}incident bundle {folder} ({stats.frames} frames, summary.md), archive {archive}", file=sys.stderr)
    return 0


def replay(options: argparse.Namespace) -> int:
    from probes.store.format import RecordingError
    from probes.store.playback import parse_time
    from probes.store.reader import Recording
    from probes.store.replay import ReplaySource
    from probes.store.rotation import find_at

    if not 1 <= options.speed <= 60:
        raise UsageError(f"speed must be between 1 and 60, not {options.speed:g}")
    try:
        path = options.file
        skipped: list[str] = []
        if path.is_dir():
            if options.at is None:
                raise UsageError(f"{path} is a directory: say when with --at (14:05, \"3m ago\")")
            path, skipped = find_at(path, parse_time(options.at, time.time_ns()))
        recording = Recording(path)
        start = None if options.at is None else recording.index_at(parse_time(options.at, recording.time_range[0]))
        source = ReplaySource(
            recording, start_index=start, speed=options.speed, paused=options.paused, redact=not options.no_redact,
        )
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None
    except RecordingError as exc:
        raise RecordingFailure(str(exc)) from None
    for line in skipped:
        print(f"orac: skipped {line}", file=sys.stderr)
    config = ui_config(options)
    theme = ui_theme(options, config)
    from .app import OracApp

    app = OracApp(source, theme=theme, screenshot_dir=options.screenshot_dir, redact=not options.no_redact,
                  config=config)
    app.run()
    recording.close()
    if source.error is not None:
        raise RecordingFailure(str(source.error))
    return app.return_code or 0


def dump(options: argparse.Namespace) -> int:
    from probes.store.dump import dump as dump_frames
    from probes.store.format import RecordingError
    from probes.store.playback import parse_time
    from probes.store.reader import Recording

    try:
        with Recording(options.file) as recording:
            if recording.warning is not None:
                print(f"orac: warning: {recording.warning}", file=sys.stderr)
            start = recording.time_range[0]
            try:
                from_ns = parse_time(options.from_, start) if options.from_ else None
                to_ns = parse_time(options.to, start) if options.to else None
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if not recording.index_range(from_ns, to_ns):
                raise UsageError(f"no frames between {options.from_ or 'the start'} and {options.to or 'the end'}"
                                 f" ({recording_span(recording)})")
            dump_frames(recording, options.format, from_ns, to_ns, sys.stdout, table=options.table)
    except RecordingError as exc:
        raise RecordingFailure(str(exc)) from None
    except BrokenPipeError:
        # `orac dump FILE | head` closed the pipe: not an error.
        sys.stderr.close()
    return 0


def recording_span(recording: Any) -> str:
    """"it runs from ... to ..." in the local times --from and --to take."""
    first, last = recording.time_range
    return f"the recording runs from {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(first / 1e9))}" \
        f" to {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last / 1e9))}"


def snapshot(options: argparse.Namespace) -> int:
    from probes.model.sampling import Sampler
    from probes.model.verdict import as_json, verdict
    from probes.model.views import derive_frame
    from probes.sources.disks import DisksProbe
    from probes.sources.process_io import ProcessIoProbe
    from probes.sources.processes import PROCESSES, ProcessProbe, cpu_sort_key
    from probes.sources.system import SYSTEM, SystemProbe

    # Only what the snapshot prints and its verdict reads (disks and each
    # process's I/O are /proc reads): loading eBPF or NVML here would cost
    # seconds and memory for nothing, so its CPU cell has no run-queue
    # latency and it has no GPU cells.
    with Sampler([SystemProbe(), ProcessProbe(), DisksProbe(), ProcessIoProbe()]) as sampler:
        first = sampler.sample()
        time.sleep(options.interval)
        second = sampler.sample()
    views = derive_frame(first, second)
    processes = views.get(PROCESSES)
    procs = sorted(processes.processes, key=cpu_sort_key, reverse=True) if processes is not None else []
    if options.top > 0:
        procs = procs[: options.top]
    data: dict[str, Any] = {
        "time": second.wall_ns / 1e9,
        "interval_s": (second.mono_ns - first.mono_ns) / 1e9,
        "system": dataclasses.asdict(system) if (system := views.get(SYSTEM)) is not None else None,
        "processes": [dataclasses.asdict(p) for p in procs],
        "unavailable": {name: {"reason": r, "remedy": f} for name, (r, f) in second.unavailable.items()},
        "verdict": as_json(verdict(views, wall_ns=second.wall_ns)),
    }
    if options.json:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(snapshot_text(data))
    return 0


def snapshot_text(data: dict[str, Any]) -> str:
    from .format import cpu_time, human_bytes, percent

    lines = [" | ".join(cell["summary"] for cell in data["verdict"])]
    s = data["system"]
    if s is not None:
        lines.append(
            f"{s['hostname']}  kernel {s['kernel']}  load {' '.join(f'{v:.2f}' for v in s['load_avg'])}"
            f"  cpu {s['cpu_total']['busy_percent']:.1f}%"
            f"  mem {human_bytes(s['memory_used_bytes'])}/{human_bytes(s['memory_total_bytes'])}"
        )
    lines.append(f"{'PID':>7} {'USER':<9} S {'CPU%':>5} {'RSS':>6} {'TIME+':>9} COMMAND")
    for p in data["processes"]:
        lines.append(
            f"{p['pid']:>7} {p['user'][:9]:<9} {p['state']} {percent(p['cpu_percent']):>5} "
            f"{human_bytes(p['rss_bytes']):>6} {cpu_time(p['cpu_time_s']):>9} {p['command'][:80]}"
        )
    return "\n".join(lines)


def doctor() -> int:
    from probes.model.doctor import check, report
    from probes.registry import all_probes

    checks = [check(p) for p in all_probes()]
    print(report(checks))
    return 0 if all(c.ok or c.absent for c in checks) else 1


def print_bpf() -> int:
    from probes.ebpf.probe import EbpfProbe
    from probes.registry import all_probes

    for probe in all_probes():
        if isinstance(probe, EbpfProbe):
            print(probe.program().listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
