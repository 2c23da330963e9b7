"""Screenshots in three forms: SVG (Textual's own), PNG (from that SVG), text."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console
from textual.app import App


def capture(app: App[object]) -> tuple[str, str]:
    """Render what is on screen now, once, as (SVG, plain text).

    This is App.export_screenshot's recipe; doing it here yields the text
    export from the same render, so the two files show the same instant.
    """
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    svg = console.export_svg(title=app.title, clear=False)
    return svg, console.export_text()


def free_stem(directory: Path, stamp: str) -> Path:
    """orac-<time>, or orac-<time>-2 ... when taken twice in one second."""
    stem = directory / f"orac-{stamp}"
    n = 2
    while any(stem.with_suffix(s).exists() for s in (".svg", ".png", ".txt")):
        stem = directory / f"orac-{stamp}-{n}"
        n += 1
    return stem


def write_screenshot(directory: Path, svg: str, text: str) -> list[Path]:
    """Write the three files side by side; returns their paths.

    PNG rendering takes a fraction of a second, so call this off the UI thread.
    """
    import cairosvg

    directory.mkdir(parents=True, exist_ok=True)
    stem = free_stem(directory, time.strftime("%Y%m%d-%H%M%S"))
    svg_path = stem.with_suffix(".svg")
    png_path = stem.with_suffix(".png")
    txt_path = stem.with_suffix(".txt")
    svg_path.write_text(svg, encoding="utf-8")
    txt_path.write_text(text, encoding="utf-8")
    # cairosvg takes only the first family of a list, and Fira Code (the SVG's
    # web font) is rarely installed: name the generic family so fontconfig
    # picks the box's monospace font and the columns stay aligned.
    png_svg = svg.replace("font-family: Fira Code, monospace", "font-family: monospace")
    cairosvg.svg2png(bytestring=png_svg.encode("utf-8"), write_to=str(png_path))
    return [svg_path, png_path, txt_path]
