"""The config file (probes.config): its format, its errors, saving it privately, and `--config`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from probes.config import Config, ConfigError, default_path, load, save
from probes.model.verdict import THRESHOLDS


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_path() == tmp_path / "orac" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".config" / "orac" / "config.toml"


def test_a_missing_file_is_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path / "none.toml")
    assert config.theme is None and config.panes == {} and config.thresholds == dict(THRESHOLDS)
    assert config.writable


def test_the_documented_format(tmp_path: Path) -> None:
    config = load(write(tmp_path / "c.toml", """
theme = "orac-light"
[panes]
gpu = false
[thresholds]
"tcp.retrans_percent" = { warning = 2, saturated = 10 }
"""))
    assert config.theme == "orac-light"
    assert not config.shown("gpu") and config.shown("disks")
    t = config.thresholds["tcp.retrans_percent"]
    assert (t.warning, t.saturated, t.reason) == (2.0, 10.0, THRESHOLDS["tcp.retrans_percent"].reason)
    assert config.thresholds["cpu.rq_p99_ms"] == THRESHOLDS["cpu.rq_p99_ms"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("theme = ", "not TOML"),
        ("colour = 'red'", "unknown setting 'colour'"),
        ("theme = 3", "theme must be a string"),
        ("[panes]\nprocesses = false", "unknown pane 'processes'"),
        ("[panes]\ngpu = 'no'", "panes.gpu must be true or false"),
        ("[thresholds]\n'cpu.nope' = { warning = 1 }", "unknown threshold 'cpu.nope'"),
        ("[thresholds]\n'cpu.rq_p99_ms' = { warn = 1 }", "must be a table of warning, saturated, error"),
        ("[thresholds]\n'cpu.rq_p99_ms' = { warning = 'x' }", "cpu.rq_p99_ms.warning must be a number"),
        ("[filesystems]\nvirtual = 'yes'", "filesystems.virtual must be true or false"),
        ("[filesystems]\nall = true", "[filesystems] must be a table with at most `virtual = true|false`"),
    ],
)
def test_a_malformed_file_says_what_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert says in message and str(path) in message and "\n" not in message


def test_virtual_filesystems_are_listed_when_the_config_asks(tmp_path: Path) -> None:
    from probes.sources.filesystems import FilesystemsProbe
    from tui.cli import apply_config

    path = write(tmp_path / "c.toml", "[filesystems]\nvirtual = true\n")
    config = load(path)
    assert config.virtual_filesystems
    save(config)
    assert load(path).virtual_filesystems
    mounted = {line.split(" - ")[1].split()[0] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    if "tmpfs" not in mounted:
        pytest.skip("no tmpfs is mounted here")
    for asked in (False, True):
        probe = FilesystemsProbe()
        apply_config([probe], Config(path, virtual_filesystems=asked))
        probe.start()
        try:
            types = {f.fs_type for f in probe.sample().filesystems}
        finally:
            probe.stop()
        assert ("tmpfs" in types) is asked, types


def test_saving_is_private_atomic_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "orac" / "config.toml"
    config = Config(path, "orac-light", {"offcpu": False}, {"disk.await_ms": {"warning": 20.0}})
    save(config)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = load(path)
    assert (again.theme, again.panes, again.overrides) == (config.theme, config.panes, config.overrides)
    config.panes["gpu"] = True
    save(config)
    assert load(path).panes == {"gpu": True, "offcpu": False}
    assert os.listdir(path.parent) == ["config.toml"]


def test_a_file_orac_could_not_parse_is_never_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "theme = ")
    save(Config(path, "orac-light", writable=False))
    assert path.read_text() == "theme = "


def test_a_link_in_place_of_the_new_file_is_not_followed(tmp_path: Path) -> None:
    target = write(tmp_path / "victim", "keep")
    (tmp_path / ".config.toml.new").symlink_to(target)
    save(Config(tmp_path / "config.toml", "orac-light"))
    assert target.read_text() == "keep"
    assert load(tmp_path / "config.toml").theme == "orac-light"


def test_the_ui_starts_with_the_defaults_after_one_line_on_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from tui.cli import live_parser, replay_parser, ui_config

    path = write(tmp_path / "c.toml", "[panes]\ngpu = 'no'")
    assert live_parser().parse_args(["--config", str(path)]).config == path
    assert replay_parser().parse_args(["f.orac", "--config", str(path)]).config == path
    config = ui_config(argparse.Namespace(config=path))
    assert config.panes == {} and not config.writable
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"orac: config {path}: ") and "starting with the defaults" in err


def test_an_unknown_theme_in_the_file_is_one_line_and_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from tui.cli import UsageError, ui_theme

    config = Config(tmp_path / "c.toml", "no-such-theme")
    with pytest.raises(UsageError, match="terminal"):
        # under pytest stdout is no terminal: the theme was settled before that check
        ui_theme(argparse.Namespace(theme=None), config)
    assert config.theme is None
    assert capsys.readouterr().err.count("\n") == 1
