"""Secrets in command lines: each rule, the misses found by hand, and screenshots of real processes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest
from support.synthetic import frames

from probes.host.procfs import shown
from probes.model.collector import Collector
from probes.model.redaction import MASK, RULES, FrameRedactor, Rule, redact_cmdline
from probes.sources.processes import ProcessProbe
from probes.sources.system import SystemProbe


@pytest.mark.parametrize("rule", RULES, ids=[f"rule{i}" for i in range(len(RULES))])
def test_each_rule_masks_its_example(rule: Rule) -> None:
    text, masked = rule.example
    assert redact_cmdline(text) == masked
    # and the rule alone does it: no other rule is needed for its example
    args = text.split("\0")
    rule.apply(args)
    assert "\0".join(args) == masked


@pytest.mark.parametrize(
    ("argv", "secret"),
    [
        # what a hand check found unmasked in recordings
        (["app", "--password=correct horse battery"], "correct horse battery"),
        (["curl", "-H", "X-Api-Key: 5f2b9c", "https://api"], "5f2b9c"),
        (["app", "--pwd=hunter2"], "hunter2"),
        (["redis-cli", "-a", "hunter2", "ping"], "hunter2"),
        # and more of the same families
        (["mysql", "-uroot", "-phunter2", "shop"], "hunter2"),
        (["mysql", "--password", "hunter2"], "hunter2"),
        (["sshpass", "-phunter2", "ssh", "h"], "hunter2"),
        (["docker", "login", "-u", "bob", "-p", "hunter2", "registry"], "hunter2"),
        (["psql", "host=db user=bob password=hunter2 dbname=app"], "hunter2"),
        (["curl", "-H", "Cookie: session=abc123", "https://x"], "abc123"),
        (["curl", "-H", "X-Auth-Token: abc123", "https://x"], "abc123"),
        (["curl", "--user", "bob:hunter2", "https://x"], "hunter2"),
        (["wget", "--http-password=hunter2", "https://x"], "hunter2"),
        (["ldapsearch", "-D", "cn=admin", "-w", "hunter2"], "hunter2"),
        (["sqlcmd", "-S", "db", "-U", "sa", "-P", "hunter2"], "hunter2"),
        (["smbclient", "//srv/share", "-U", "bob%hunter2"], "hunter2"),
        (["openssl", "enc", "-pass", "pass:hunter2"], "hunter2"),
        (["aws", "--profile", "x", "AKIAIOSFODNN7EXAMPLE"], "AKIAIOSFODNN7EXAMPLE"),
        (["app", "--token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTI"], "eyJhbGciOiJIUzI1NiJ9"),
        (["java", "-Dspring.datasource.password=hunter2", "-jar", "app.jar"], "hunter2"),
    ],
)
def test_secrets_are_masked_argument_by_argument(argv: list[str], secret: str) -> None:
    text = "\0".join(argv)
    assert secret not in redact_cmdline(text)
    assert MASK in redact_cmdline(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["ssh", "-p", "2222", "host"],
        ["docker", "run", "-p", "8080:80", "nginx"],
        ["mysql", "-p", "db"],  # prompts; "db" is the database
        ["python3", "train.py", "--epochs", "10", "tokenizer=bert"],
        ["app", "--password-file", "/etc/app/pw"],
        ["app", "--password", "--verbose"],  # prompts
        ["curl", "https://example.com:8443/path"],
        ["git", "log", "--author=bob"],
        ["nginx: master process /usr/sbin/nginx"],
        [""],
    ],
)
def test_what_is_not_secret_is_kept(argv: list[str]) -> None:
    text = "\0".join(argv)
    assert redact_cmdline(text) == text


def test_space_separated_text_still_redacts_word_by_word() -> None:
    """Recordings from before orac kept the NULs joined command lines with spaces."""
    assert redact_cmdline("mysql -u root -phunter2 db") == "mysql -u root -p*** db"
    assert redact_cmdline("curl -H Authorization: Bearer abc.def https://x") == "curl -H Authorization: Bearer *** https://x"


def test_shown_joins_arguments_with_spaces() -> None:
    assert shown("a\0b c\0d") == "a b c d"


def test_frame_redactor_walks_only_what_can_hold_a_command_line() -> None:
    frame = frames()[0]
    procs = frame.samples["procs"]
    secret = dataclasses.replace(procs.processes[0], cmdline="app\0--token\0abc")
    frame = dataclasses.replace(frame, samples={**frame.samples, "procs": dataclasses.replace(procs, processes=(secret, *procs.processes[1:]))})
    redacted = FrameRedactor().frame(frame)
    assert redacted.samples["procs"].processes[0].cmdline == "app\0--token\0***"
    # unchanged processes and samples without command lines are the same objects
    assert redacted.samples["procs"].processes[1] is frame.samples["procs"].processes[1]
    assert all(redacted.samples[n] is frame.samples[n] for n in frame.samples if n != "procs")


# --- on screen and in screenshots, with real processes ----------------------------------------

SLEEP = "import time; time.sleep(120)"
# (argv[0] as the process shows it, the rest, the secret in it)
PLANTED = [
    ("app", ["--password=correct horse battery"], "correct horse battery"),
    ("app", ["--db-password", "tr0ub4dor"], "tr0ub4dor"),
    ("app", ["--pwd=pl4nted1"], "pl4nted1"),
    ("curl", ["-H", "X-Api-Key: k3y-pl4nted", "https://api"], "k3y-pl4nted"),
    ("curl", ["-u", "bob:pl4nted2", "https://x"], "pl4nted2"),
    ("/usr/bin/mysql", ["-uroot", "-ppl4nted3", "shop"], "pl4nted3"),
    ("redis-cli", ["-a", "pl4nted4", "ping"], "pl4nted4"),
    ("psql", ["postgres://bob:pl4nted5@db/app"], "pl4nted5"),
    ("env", ["AWS_SECRET_ACCESS_KEY=pl4nted6"], "pl4nted6"),
    ("app", ["--token", "pl4nted7"], "pl4nted7"),
]


@pytest.fixture
def secret_processes():
    """Real processes with secrets in their command lines (argv[0] set with bash's exec -a)."""
    children = []
    for argv0, args, _ in PLANTED:
        quoted = " ".join(f"'{a}'" for a in args)
        children.append(subprocess.Popen(
            ["bash", "-c", f"exec -a '{argv0}' {sys.executable} -c '{SLEEP}' {quoted}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        ))
    time.sleep(0.3)
    yield children
    for child in children:
        child.kill()
        child.wait()


async def screenshot_of(redact: bool, pid: int | None = None) -> str:
    from tui.app import OracApp
    from tui.process_pane import ProcessPane
    from tui.screenshot import capture

    collector = Collector([SystemProbe(), ProcessProbe()], interval_s=0.5, redact=redact)
    app = OracApp(collector, redact=redact)
    async with app.run_test(size=(200, 60)) as pilot:
        while "procs" not in app.views:
            await pilot.pause(0.05)
        pane = app.query_one(ProcessPane)
        pane.table.set_filter(SLEEP[:12])
        await pilot.pause(0.2)
        svg, text = capture(app)
        if pid is not None:
            app.on_process_table_selected(pane.table.Selected(pid))
            for _ in range(100):
                await pilot.pause(0.05)
                details = getattr(app.screen, "query", None) and app.screen.query("#details")
                if details and "exe" in str(details.first().render()):
                    break
            svg2, text2 = capture(app)
            svg, text = svg + svg2, text + text2
    return svg + text


async def test_screenshots_hold_no_planted_secret(secret_processes) -> None:
    seen = await screenshot_of(True, secret_processes[0].pid)
    assert "time.sleep" in seen  # the processes are on screen
    leaked = [secret for _, _, secret in PLANTED if secret in seen or secret.replace(" ", "&#160;") in seen]
    assert leaked == []


async def test_no_redact_shows_them(secret_processes) -> None:
    seen = await screenshot_of(False)
    assert "pl4nted7" in seen and "tr0ub4dor" in seen
