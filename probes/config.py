"""orac's config file: the theme, which panes are shown, verdict threshold overrides.

$XDG_CONFIG_HOME/orac/config.toml (~/.config/orac/config.toml), or the
file `--config` names:

    theme = "orac-light"

    [panes]            # false hides a pane; the number keys change these
    gpu = false
    offcpu = true

    [thresholds]       # probes.model.verdict.THRESHOLDS keys; levels left out keep their default
    "tcp.retrans_percent" = { warning = 2, saturated = 10 }

A file that cannot be read or does not say what orac understands is
reported in one line and orac starts with the defaults, and never
overwrites that file: it may be the user's half-done edit. The theme and
pane choices made in the UI are written back, privately (mode 0600,
created through probes.store.private_files) and atomically (a new file
renamed over the old), so a crash mid-write leaves the old file.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from probes.model.verdict import THRESHOLDS, Threshold
from probes.store.private_files import PrivateDirectory

# The panes a config (and the number keys) can show or hide, by probe name;
# the CPU, memory and process panes are always there.
PANES = ("gpu", "disks", "filesystems", "net", "kmsg", "cgroups", "syscalls", "offcpu")
LEVELS = ("warning", "saturated", "error")


class ConfigError(ValueError):
    """A config file orac cannot use; the message is one line naming the file."""


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "orac" / "config.toml"


@dataclass
class Config:
    """What a config file says; `thresholds` is THRESHOLDS with its overrides applied.

    `writable`: whether UI changes may be saved to `path` (not over a file orac could not parse).
    """

    path: Path
    theme: str | None = None
    panes: dict[str, bool] = field(default_factory=dict)
    overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    # [filesystems] virtual: list tmpfs, overlay, squashfs ... too (probes.sources.filesystems.VIRTUAL_TYPES)
    virtual_filesystems: bool = False
    writable: bool = True

    @property
    def thresholds(self) -> Mapping[str, Threshold]:
        table = dict(THRESHOLDS)
        for key, levels in self.overrides.items():
            t = table[key]
            table[key] = replace(t, warning=levels.get("warning", t.warning), saturated=levels.get("saturated", t.saturated),
                                 error=levels.get("error", t.error))
        return table

    def shown(self, pane: str) -> bool:
        return self.panes.get(pane, True)


def load(path: Path | None = None) -> Config:
    """The config at `path` (default_path() if None); a missing file is the defaults.

    Raises:
        ConfigError: the file cannot be read or parsed, or says something orac does not understand.
    """
    path = path or default_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return Config(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML: {exc}") from None
    try:
        return _parse(path, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse(path: Path, data: dict[str, Any]) -> Config:
    unknown = set(data) - {"theme", "panes", "thresholds", "filesystems"}
    if unknown:
        raise ConfigError(
            f"unknown setting {sorted(unknown)[0]!r} (theme, [panes], [thresholds] and [filesystems] are known)"
        )
    filesystems = data.get("filesystems", {})
    if not isinstance(filesystems, dict) or set(filesystems) - {"virtual"}:
        raise ConfigError("[filesystems] must be a table with at most `virtual = true|false`")
    virtual = filesystems.get("virtual", False)
    if not isinstance(virtual, bool):
        raise ConfigError("filesystems.virtual must be true or false")
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        raise ConfigError("theme must be a string")
    panes = data.get("panes", {})
    if not isinstance(panes, dict):
        raise ConfigError("[panes] must be a table")
    for name, shown in panes.items():
        if name not in PANES:
            raise ConfigError(f"unknown pane {name!r} in [panes]; known: {', '.join(PANES)}")
        if not isinstance(shown, bool):
            raise ConfigError(f"panes.{name} must be true or false")
    overrides: dict[str, dict[str, float]] = {}
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ConfigError("[thresholds] must be a table")
    for key, levels in thresholds.items():
        if key not in THRESHOLDS:
            raise ConfigError(f"unknown threshold {key!r}; see README's verdict table for the keys")
        if not isinstance(levels, dict) or not levels or set(levels) - set(LEVELS):
            raise ConfigError(f"thresholds.{key} must be a table of {', '.join(LEVELS)}")
        for level, value in levels.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"thresholds.{key}.{level} must be a number")
        overrides[key] = {level: float(value) for level, value in levels.items()}
    return Config(path, theme, dict(panes), overrides, virtual)


def _toml(config: Config) -> str:
    # JSON's strings and numbers are TOML's for what a config holds.
    lines = ["# orac's settings; the theme and [panes] are rewritten when changed in orac."]
    if config.theme is not None:
        lines.append(f"theme = {json.dumps(config.theme)}")
    if config.panes:
        lines += ["", "[panes]", *(f"{name} = {json.dumps(shown)}" for name, shown in sorted(config.panes.items()))]
    if config.virtual_filesystems:
        lines += ["", "[filesystems]", "virtual = true"]
    if config.overrides:
        lines += ["", "[thresholds]"]
        for key, levels in sorted(config.overrides.items()):
            values = ", ".join(f"{level} = {value:g}" for level, value in levels.items())
            lines.append(f"{json.dumps(key)} = {{ {values} }}")
    return "\n".join(lines) + "\n"


def save(config: Config) -> None:
    """Write `config` to its path: a private new file renamed over the old one.

    Raises:
        OSError: the directory is unsafe (probes.store.private_files.UnsafeDirectory) or cannot be written.
    """
    if not config.writable:
        return
    with PrivateDirectory(config.path.parent, create=True) as directory:
        stem, [fd] = directory.create_set(f".{config.path.name}.new", ("",))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_toml(config))
                f.flush()
                os.fsync(f.fileno())
            os.replace(stem, config.path.name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
        except BaseException:
            directory.unlink(stem)
            raise
