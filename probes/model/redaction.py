"""Secrets in command lines, masked before anything shows or stores them.

orac shows, records and screenshots command lines, and people paste its
screenshots into incidents. Every command line goes through
`redact_cmdline` first (unless the user runs orac with --no-redact):
`RULES` below is the whole list of what is masked, each rule with an example
that the tests check. Rules work argument by argument: a process probe keeps
/proc/PID/cmdline's NUL separators (ARG_SEPARATOR), so `--password=correct
horse battery` is one argument, masked whole. Text without them (recordings
from before, or any plain string) is split on spaces instead.

Masking is conservative where a value is usually not a secret: `-p 8080` is
a port to most programs and stays; `-p` is a password only for the programs
that use it so (mysql's `-pSECRET`, sshpass, docker login).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.host.procfs import ARG_SEPARATOR
from probes.model.frame import Frame
from probes.store.validation import field_hints

MASK = "***"

# What names a secret in `NAME=VALUE` and `--NAME VALUE`: the name ends in one of these.
_SECRET_WORD = (
    r"(?:password|passwd|pwd|passphrase|token|secret|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"
    r"|private[_-]?key|mysql_pwd)"
)
_ASSIGNMENT_ARG = re.compile(rf"(?i)^(-{{0,2}}[\w.-]*?{_SECRET_WORD})=(.+)$")
_ASSIGNMENT_INSIDE = re.compile(rf"(?i)((?<=[?&;\s,])[\w.-]*?{_SECRET_WORD})=([^\s&;,]+)")
_SECRET_OPTION = re.compile(rf"(?i)^--?(?:[\w-]*[-_])?(?:{_SECRET_WORD}|key|pass|passin|passout)$")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")
# An HTTP header that carries a credential: its name, then the value.
_CREDENTIAL_HEADER = re.compile(
    r"(?i)^((?:proxy-)?authorization|cookie|set-cookie|[\w-]*(?:token|api-?key|secret|session|password|auth)[\w-]*):\s*(.*)$"
)
_AUTH_SCHEME = re.compile(r"(?i)^(?:bearer|basic|token|digest|negotiate)$")
_TOKEN_SHAPES = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abprs]-[\w-]{10,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}|sk_live_[0-9A-Za-z]{16,}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,})"
)
# Programs whose short options carry a password, by the program's file name.
_PASSWORD_FLAGS: dict[str, tuple[str, bool]] = {
    # program: (option, whether the value is attached: -pSECRET)
    **{name: ("-p", True) for name in (
        "mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck", "mariadb", "mariadb-dump",
    )},
    "sshpass": ("-p", False),
    "redis-cli": ("-a", False),
    "ldapsearch": ("-w", False),
    "ldapmodify": ("-w", False),
    "sqlcmd": ("-P", False),
}
_USER_PASSWORD_FLAGS = {"curl": ("-u", "--user"), "wget": ("--user",), "smbclient": ("-U", "--user")}


@dataclass(frozen=True)
class Rule:
    """One kind of secret: what it looks like, and an example (text, as masked) the tests check."""

    name: str
    example: tuple[str, str]
    apply: Callable[[list[str]], None]


def _assignments(args: list[str]) -> None:
    for i, arg in enumerate(args):
        whole = _ASSIGNMENT_ARG.match(arg)
        if whole:
            # The whole rest of the argument: a value with spaces is one secret.
            args[i] = f"{whole.group(1)}={MASK}"
        elif "=" in arg:
            args[i] = _ASSIGNMENT_INSIDE.sub(rf"\1={MASK}", arg)


def _options(args: list[str]) -> None:
    for i in range(len(args) - 1):
        # A next word starting with "-" is another option (the program will prompt), not the secret.
        if _SECRET_OPTION.match(args[i]) and args[i + 1] and not args[i + 1].startswith("-"):
            args[i + 1] = MASK


def _urls(args: list[str]) -> None:
    for i, arg in enumerate(args):
        if "://" in arg:
            args[i] = _URL_PASSWORD.sub(rf"\1{MASK}@", arg)


def _headers(args: list[str]) -> None:
    for i, arg in enumerate(args):
        header = _CREDENTIAL_HEADER.match(arg)
        if not header:
            continue
        value = header.group(2)
        if value:
            scheme, _, rest = value.partition(" ")
            kept = f"{scheme} " if rest and _AUTH_SCHEME.match(scheme) else ""
            args[i] = f"{header.group(1)}: {kept}{MASK}"
            continue
        # Split on spaces: the value is in the next words.
        j = i + 1
        if j < len(args) and _AUTH_SCHEME.match(args[j]):
            j += 1
        if j < len(args):
            args[j] = MASK


def _token_shapes(args: list[str]) -> None:
    for i, arg in enumerate(args):
        args[i] = _TOKEN_SHAPES.sub(MASK, arg)


def _program(args: list[str]) -> str:
    return args[0].rsplit("/", 1)[-1] if args else ""


def _password_flags(args: list[str]) -> None:
    program = _program(args)
    if program == "docker" and "login" in args[1:3]:
        flag, attached = "-p", False
    elif program in _PASSWORD_FLAGS:
        flag, attached = _PASSWORD_FLAGS[program]
    else:
        return
    for i in range(1, len(args)):
        arg = args[i]
        if attached:
            if arg.startswith(flag) and len(arg) > len(flag):
                args[i] = flag + MASK
        elif arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
            args[i + 1] = MASK
        elif arg.startswith(flag) and len(arg) > len(flag) and program != "docker":
            args[i] = flag + MASK


def _user_passwords(args: list[str]) -> None:
    flags = _USER_PASSWORD_FLAGS.get(_program(args))
    if not flags:
        return
    separator = "%" if _program(args) == "smbclient" else ":"
    for i in range(1, len(args)):
        for flag in flags:
            if args[i] == flag and i + 1 < len(args):
                user, sep, _ = args[i + 1].partition(separator)
                if sep:
                    args[i + 1] = f"{user}{sep}{MASK}"
            elif args[i].startswith(flag) and len(args[i]) > len(flag) and not args[i].startswith("--"):
                user, sep, _ = args[i][len(flag):].partition(separator)
                if sep:
                    args[i] = f"{flag}{user}{sep}{MASK}"


RULES: tuple[Rule, ...] = (
    Rule(
        "NAME=VALUE where NAME ends in password, passwd, pwd, passphrase, token, secret, api_key, access_key, "
        "secret_key or private_key: as an argument (the whole value) or inside one (a URL query, a conninfo)",
        ("app\0--password=correct horse battery\0psql\0host=db password=s3cret dbname=x\0PGPASSWORD=x",
         "app\0--password=***\0psql\0host=db password=*** dbname=x\0PGPASSWORD=***"),
        _assignments,
    ),
    Rule(
        "an option of those names, or --key, --pass, -passin, -passout, followed by its value",
        ("app\0--db-password\0hunter2\0--token\0abc\0--pwd\0x\0--password\0--verbose",
         "app\0--db-password\0***\0--token\0***\0--pwd\0***\0--password\0--verbose"),
        _options,
    ),
    Rule(
        "the password in a URL: scheme://user:password@host",
        ("psql\0postgres://bob:s3cret@db/app", "psql\0postgres://bob:***@db/app"),
        _urls,
    ),
    Rule(
        "an HTTP header with a credential (Authorization, Cookie, X-Api-Key, X-Auth-Token, ...): its value, "
        "keeping an authorization scheme",
        ("curl\0-H\0X-Api-Key: k-123\0-H\0Authorization: Bearer abc.def",
         "curl\0-H\0X-Api-Key: ***\0-H\0Authorization: Bearer ***"),
        _headers,
    ),
    Rule(
        "tokens that are secrets by their shape: GitHub, GitLab, Slack, AWS access key ids, Stripe live keys, "
        "Google API keys, JSON web tokens",
        ("deploy\0AKIAIOSFODNN7EXAMPLE\0ghp_abcdefghijklmnopqrstuvwxyz0123456789", "deploy\0***\0***"),
        _token_shapes,
    ),
    Rule(
        "the password options of mysql and mariadb (-pSECRET), sshpass -p, redis-cli -a, ldapsearch -w, "
        "sqlcmd -P and docker login -p",
        ("redis-cli\0-a\0hunter2\0ping", "redis-cli\0-a\0***\0ping"),
        _password_flags,
    ),
    Rule(
        "user:password given to curl -u, wget --user and smbclient -U (user%password)",
        ("curl\0-u\0bob:pw\0https://x", "curl\0-u\0bob:***\0https://x"),
        _user_passwords,
    ),
)


@functools.lru_cache(maxsize=8192)
def redact_cmdline(text: str) -> str:
    """`text` with every secret RULES finds replaced by "***"; arguments split as the module says."""
    separator = ARG_SEPARATOR if ARG_SEPARATOR in text else " "
    args = text.split(separator)
    for rule in RULES:
        rule.apply(args)
    return separator.join(args)


# Sample fields that hold a command line.
REDACTED_FIELDS = frozenset({"cmdline"})


@functools.cache
def _carries(hint: Any) -> bool:
    """Whether a value of this type hint can hold a REDACTED_FIELDS string anywhere inside."""
    if hint is Any:
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return any(name in REDACTED_FIELDS or _carries(h) for name, h in field_hints(hint))
    return any(_carries(arg) for arg in typing.get_args(hint) if arg is not Ellipsis)


class FrameRedactor:
    """Redacts every REDACTED_FIELDS string in a frame's samples.

    Only the fields whose type can hold one are walked (the process list,
    not an eBPF probe's thousands of counters). Results are remembered by
    object from one frame to the next: the process probe hands back the
    same ProcSample while a process is unchanged, so a steady frame costs a
    dictionary lookup per process, and the redacted objects stay identical
    from frame to frame, which the recording codec's deltas exploit. The
    memo keeps the source objects alive, so an id cannot be reused by
    another object while it is in the memo.
    """

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, Any]] = {}
        self._next: dict[int, tuple[Any, Any]] = {}

    def frame(self, frame: Frame) -> Frame:
        self._next = {}
        samples: dict[str, Any] = {}
        for name, sample in frame.samples.items():
            kind: Any = type(sample)
            samples[name] = self._walk(sample) if _carries(kind) else sample
        self._memo = self._next
        if all(samples[name] is frame.samples[name] for name in samples):
            return frame
        return dataclasses.replace(frame, samples=samples)

    def _walk(self, value: Any) -> Any:
        t: Any = type(value)
        if t is tuple or t is list:
            items = [self._walk(item) for item in value]
            return value if all(a is b for a, b in zip(items, value)) else t(items)
        if t is dict:
            out = {key: self._walk(item) for key, item in value.items()}
            return value if all(out[k] is value[k] for k in value) else out
        if not dataclasses.is_dataclass(value) or isinstance(value, type) or not _carries(t):
            return value
        known = self._memo.get(id(value))
        if known is not None and known[0] is value:
            self._next[id(value)] = known
            return known[1]
        changes = {}
        for name, hint in field_hints(t):
            old = getattr(value, name)
            if name in REDACTED_FIELDS and type(old) is str:
                new = redact_cmdline(old)
            elif _carries(hint):
                new = self._walk(old)
            else:
                continue
            if new is not old and new != old:
                changes[name] = new
        result = dataclasses.replace(value, **changes) if changes else value
        self._next[id(value)] = (value, result)
        return result
