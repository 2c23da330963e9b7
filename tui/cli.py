"""The `orac` command.

Headless commands (snapshot, doctor) never import textual, so they work
where no terminal UI can run (cron, systemd, a pipe).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

from probes.collector import MAX_INTERVAL_S, MIN_INTERVAL_S


class UsageError(Exception):
    pass


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


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


def live_parser() -> Parser:
    parser = Parser(prog="orac", description="Live performance triage for Linux.")
    parser.add_argument("--interval", type=interval, default=1.0, help="seconds between samples (0.2 to 60)")
    parser.add_argument("--theme", default=None, help="orac-dark (default), orac-light, orac-high-contrast, ...")
    parser.add_argument(
        "--screenshot-dir", type=Path, default=Path("orac-screenshots"), help="where `s` saves screenshots"
    )
    parser.epilog = "other commands: orac snapshot [--json], orac doctor"
    return parser


def snapshot_parser() -> Parser:
    parser = Parser(prog="orac snapshot", description="Print one sample's derived values and exit.")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument("--interval", type=interval, default=0.5, help="seconds between the two samples rates need")
    parser.add_argument("--top", type=count, default=20, help="how many processes, busiest first (0: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "snapshot":
            return snapshot(snapshot_parser().parse_args(args[1:]))
        if args and args[0] == "doctor":
            Parser(prog="orac doctor", description="Check which probes can run here.").parse_args(args[1:])
            return doctor()
        return live(live_parser().parse_args(args))
    except UsageError as exc:
        print(f"orac: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def live(options: argparse.Namespace) -> int:
    from probes.collector import Collector
    from probes.registry import all_probes
    from textual.theme import BUILTIN_THEMES
    from themes import DEFAULT_THEME, THEMES

    theme = options.theme or DEFAULT_THEME
    if theme not in THEMES and theme not in BUILTIN_THEMES:
        names = ", ".join([*THEMES, *sorted(BUILTIN_THEMES)])
        raise UsageError(f"unknown theme {theme!r}; choose one of: {names}")
    if not sys.stdout.isatty():
        raise UsageError("the live UI needs a terminal; for scripts use `orac snapshot --json`")

    from .app import OracApp

    app = OracApp(Collector(all_probes(), options.interval), theme=theme, screenshot_dir=options.screenshot_dir)
    app.run()
    return app.return_code or 0


def snapshot(options: argparse.Namespace) -> int:
    from probes.collector import sample_frame, start_probes
    from probes.processes import ProcessProbe
    from probes.system import SystemProbe
    from probes.views import cpu_sort_key, derive_frame

    # Only what the snapshot prints: loading eBPF or NVML here would cost
    # seconds and memory for nothing.
    running, unavailable = start_probes([SystemProbe(), ProcessProbe()])
    try:
        first = sample_frame(running, unavailable)
        time.sleep(options.interval)
        second = sample_frame(running, unavailable)
    finally:
        for probe in running:
            probe.stop()
    views = derive_frame(first, second)
    procs = sorted(views["procs"].processes, key=cpu_sort_key, reverse=True) if "procs" in views else []
    if options.top > 0:
        procs = procs[: options.top]
    data: dict[str, Any] = {
        "time": second.wall_ns / 1e9,
        "interval_s": (second.mono_ns - first.mono_ns) / 1e9,
        "system": dataclasses.asdict(views["cpu"]) if "cpu" in views else None,
        "processes": [dataclasses.asdict(p) for p in procs],
        "unavailable": {name: {"reason": r, "remedy": f} for name, (r, f) in second.unavailable.items()},
    }
    if options.json:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(snapshot_text(data))
    return 0


def snapshot_text(data: dict[str, Any]) -> str:
    from .format import cpu_time, human_bytes, percent

    lines = []
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
    from probes.doctor import check, report
    from probes.registry import all_probes

    checks = [check(p) for p in all_probes()]
    print(report(checks))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
