"""Screenshots in three forms: SVG (Textual's own), PNG (from that SVG), text."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from rich.console import Console
from textual.app import App

from probes.store.private_files import PrivateDirectory

from .verdict_strip import VerdictStrip

SUFFIXES = (".svg", ".png", ".txt")


def capture(app: App[object]) -> tuple[str, str]:
    """Render what is on screen now, once, as (SVG, plain text).

    This is App.export_screenshot's recipe; doing it here yields the text
    export from the same render, so the two files show the same instant.
    """
    # The strip's clock moves with the frames: a screenshot shows when it was taken.
    for strip in app.screen.query(VerdictStrip):
        strip.refresh()
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


def write_screenshot(directory: Path, svg: str, text: str) -> list[Path]:
    """Write the three files side by side, mode 0600 in a directory only the caller controls; returns their paths.

    PNG rendering takes a fraction of a second, so call this off the UI thread.

    Raises:
        OSError: the directory is unsafe (probes.private_files.UnsafeDirectory)
            or a file cannot be written; nothing half-written is left.
    """
    import cairosvg

    # cairosvg takes only the first family of a list, and Fira Code (the SVG's
    # web font) is rarely installed: name the generic family so fontconfig
    # picks the box's monospace font and the columns stay aligned.
    png_svg = svg.replace("font-family: Fira Code, monospace", "font-family: monospace")
    with PrivateDirectory(directory, create=True) as private:
        stem, fds = private.create_set(f"orac-{time.strftime('%Y%m%d-%H%M%S')}", SUFFIXES)
        files = [os.fdopen(fd, "wb") for fd in fds]
        try:
            svg_file, png_file, txt_file = files
            svg_file.write(svg.encode("utf-8"))
            txt_file.write(text.encode("utf-8"))
            cairosvg.svg2png(bytestring=png_svg.encode("utf-8"), write_to=png_file)
        except BaseException:
            for suffix in SUFFIXES:
                private.unlink(stem + suffix)
            raise
        finally:
            for f in files:
                f.close()
    return [directory / (stem + suffix) for suffix in SUFFIXES]
