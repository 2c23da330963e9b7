"""probes/ and the headless commands must work without loading textual.

Each check runs in a fresh interpreter: in this one, other tests (or pytest
plugins such as pytest-textual-snapshot) may have imported textual already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Prints {"modules": [...imported probe modules...], "textual": [...textual modules loaded...]}.
REPORT = (
    "import json, sys\n"
    "loaded = sorted(n for n in sys.modules if n == 'textual' or n.startswith('textual.'))\n"
    "print('\\nRESULT ' + json.dumps({'modules': MODULES, 'textual': loaded}))\n"
)


def run_python(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_importing_every_probes_module_leaves_textual_out() -> None:
    code = (
        "import importlib, pkgutil\n"
        "import probes\n"
        "MODULES = []\n"
        "for info in pkgutil.walk_packages(probes.__path__, 'probes.'):\n"
        "    importlib.import_module(info.name)\n"
        "    MODULES.append(info.name)\n"
    ) + REPORT
    result = run_python(code)
    # the walk really found the modules (an empty walk would pass vacuously)
    assert {"probes.sources.system", "probes.sources.processes", "probes.model.views", "probes.model.collector",
            "probes.registry", "probes.model.doctor", "probes.model.history", "probes.model.frame", "probes.contract",
            "probes.store.writer", "probes.ebpf.programs", "probes.symbols.symbolizer"} <= set(result["modules"])
    assert result["textual"] == []


def test_the_check_detects_textual() -> None:
    # Control: the same check does see textual when the UI is imported, so
    # the tests above cannot pass just because the detection is broken.
    result = run_python("import tui.app\nMODULES = ['tui.app']\n" + REPORT)
    assert "textual" in result["textual"]


def test_importing_tui_format_leaves_textual_out() -> None:
    result = run_python("import tui.format, tui.cli\nMODULES = ['tui.format', 'tui.cli']\n" + REPORT)
    assert result["textual"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["snapshot", "--json", "--interval", "0.2"],
        ["snapshot", "--interval", "0.2", "--top", "3"],
        ["doctor"],
    ],
    ids=["snapshot-json", "snapshot-text", "doctor"],
)
def test_headless_commands_leave_textual_out(argv: list[str]) -> None:
    code = (
        "from tui.cli import main\n"
        f"rc = main({argv!r})\n"
        "MODULES = ['rc=%d' % rc]\n"
    ) + REPORT
    result = run_python(code)
    # doctor exits 1 where a probe that applies cannot run here (no root, say): still no textual
    assert result["modules"] in (["rc=0"], ["rc=1"]) if argv == ["doctor"] else result["modules"] == ["rc=0"]
    assert result["textual"] == []
