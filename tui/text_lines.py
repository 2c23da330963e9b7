"""Widgets drawn a line of Rich Text at a time, redrawing only the lines that change."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip

from .pane import Pane


class TextLines:
    """A mixin for a Widget whose render() gives Rich Text fitted to its width, a line per row.

    Textual turns a render() into strips through its Visual and Content
    machinery, for every line, at each refresh: for the CPU and memory
    panes that was two thirds of their drawing time, more than working out
    what to show. Here each line of Text becomes a strip directly, and
    `refresh_lines` redraws only the lines whose text changed (a memory
    pane's swap line, a CPU pane's PSI line, most ticks). A full refresh
    (a resize, a theme, a new height) draws every line again from render().
    """

    _text_lines: list[Text] | None = None
    _line_strips: list[Strip | None]
    _kept_component_styles: dict[str, Style] | None = None

    def component_style(self, name: str) -> Style:
        """The Rich style of a component class, kept until the styles change.

        Textual's get_component_rich_style forgets its cache at every
        refresh, a line's too, and works each style out again from the CSS.
        """
        styles = self._kept_component_styles
        if styles is None:
            styles = self._kept_component_styles = {}
        style = styles.get(name)
        if style is None:
            style = styles[name] = self.get_component_rich_style(name)
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._kept_component_styles = None
        # The lines kept are drawn in the old styles.
        self.refresh()

    def text_lines(self) -> list[Text]:
        """The lines to show: by default render()'s text split at its newlines.

        A widget gives either render() or text_lines(); each defaults to the other.
        """
        return self.render().split("\n", allow_blank=True)

    def render(self) -> Text:
        return Text("\n").join(self.text_lines())

    def refresh(self, *regions: Region, **kwargs: Any) -> Any:
        if not regions:
            self._text_lines = None
        return super().refresh(*regions, **kwargs)

    def refresh_lines(self) -> None:
        """Redraw the lines whose text changed since drawn; all of them, laid out, when their number did."""
        old = self._text_lines
        if old is None:
            self.refresh()
            return
        new = self.text_lines()
        if len(new) != len(old):
            self.refresh(layout=True)
            return
        self._text_lines = new
        width = self.size.width
        for y, (was, now) in enumerate(zip(old, new)):
            if was != now:
                self._line_strips[y] = None
                super().refresh(Region(0, y, width, 1))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._text_lines is None:
            self._text_lines = self.text_lines()
            self._line_strips = [None] * len(self._text_lines)
        if y >= len(self._text_lines):
            return Strip.blank(width, self.visual_style.rich_style)
        strip = self._line_strips[y]
        if strip is None:
            strip = self._line_strips[y] = self._strip(self._text_lines[y], width)
        return strip

    def _strip(self, text: Text, width: int) -> Strip:
        if text.cell_len > width:
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        console = self.app.console
        base = self.visual_style.rich_style
        return Strip(list(text.render(console)), text.cell_len).apply_style(base)


class TextPane(TextLines, Pane):
    """A pane drawn through TextLines: each view redraws the lines it changed."""

    RENDERS_VIEW = False

    def show_view(self, view: Any) -> None:
        super().show_view(view)
        self.refresh_lines()
