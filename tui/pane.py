"""The base of every pane: a widget fed one probe's derived view."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.markup import escape
from textual.containers import ScrollableContainer
from textual.geometry import Region
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from probes.contract import ProbeSpec, Unavailable, Views
from probes.model.frame import Frame


class _BorderText:
    """A border title or subtitle that repaints its border line, and only when it changes.

    Textual's repaints the whole widget on every assignment, and a pane's
    region holds its tables: the compositor then draws all of them again.
    Panes set their titles every tick, most ticks to what they were, and
    when one changes only its line needs drawing.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._textual = Widget.__dict__[name]
        self._kept = f"_kept_{name}"
        self._top = name == "border_title"

    def __get__(self, obj: Widget | None, objtype: type | None = None) -> Any:
        return self if obj is None else self._textual.__get__(obj, objtype)

    def __set__(self, obj: Widget, text: str | None) -> None:
        if getattr(obj, self._kept, _UNSET) == text:
            return
        setattr(obj, self._kept, text)
        outer = obj.outer_size
        if not obj.is_mounted or not outer or text is None:
            self._textual.__set__(obj, text)
            return
        # What Textual's own setter stores, without its whole-widget refresh.
        setattr(obj, self._textual._internal_name, obj.render_str(text).expand_tabs(4).split()[0])
        # Regions are relative to the content: the border lines lie outside it.
        offset = obj.content_offset
        row = 0 if self._top else outer.height - 1
        obj.refresh(Region(-offset.x, row - offset.y, outer.width, 1))


_UNSET = object()


class Pane(Widget):
    """A widget subscribed to one probe.

    The app sets `view` from each FrameReady ("attributes down"); a probe
    that cannot run gives the pane its reason and remedy to show instead.
    """

    PROBE: ClassVar[ProbeSpec[Any, Any]]
    # Whether the pane's own render() shows the view; a pane of child
    # widgets repaints only those that change.
    RENDERS_VIEW: ClassVar[bool] = True
    border_title = _BorderText()  # type: ignore[assignment]
    border_subtitle = _BorderText()  # type: ignore[assignment]
    # Other probes whose views this pane joins with its own; `feed` leaves
    # them in `joined`, and why they could not run in `joined_unavailable`.
    JOINS: ClassVar[tuple[ProbeSpec[Any, Any], ...]] = ()

    DEFAULT_CSS = """
    Pane {
        border: round $primary;
        border-title-color: $primary;
    }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view: Any = None
        self.unavailable: Unavailable | None = None
        self.joined = Views()
        self.joined_unavailable: dict[str, Unavailable] = {}

    def show_view(self, view: Any) -> None:
        # The first view, or one after an outage, changes the pane's height;
        # later ones only its content, which is the cheaper refresh.
        relayout = self.view is None or self.unavailable is not None
        self.view = view
        self.unavailable = None
        self.remove_class("-unavailable")
        if relayout or self.RENDERS_VIEW:
            self.refresh(layout=relayout)

    def shown_wall_ns(self) -> int:
        """The wall time of the frame shown: OracApp's, or now for a pane alone in a test app."""
        frame = getattr(self.app, "frame", None)
        return frame.wall_ns if frame is not None else time.time_ns()

    def show_unavailable(self, reason: str, remedy: str) -> None:
        if self.unavailable != (reason, remedy):
            self.unavailable = Unavailable(reason, remedy)
            self.add_class("-unavailable")
            self.refresh(layout=True)

    def show_absent(self, reason: str) -> None:
        """The frames shown have no sample of the probe at all (a recording made without it)."""
        self.show_unavailable(reason, "")

    def unavailable_text(self) -> str:
        assert self.unavailable is not None
        reason, remedy = self.unavailable
        return f"{self.PROBE.name}: {reason}" + (f"\n{remedy}" if remedy else "")



class MessagePane(Pane):
    """A pane of tables that, while its probe cannot run, shows why in their place.

    Subclasses yield `Static(classes="pane-message")` among their children
    and draw a view in `draw`.
    """

    RENDERS_VIEW = False

    DEFAULT_CSS = """
    MessagePane.-unavailable { height: auto; }
    MessagePane > .pane-message { display: none; padding: 0 1; color: $error; }
    MessagePane.-unavailable > * { display: none; }
    MessagePane.-unavailable > .pane-message { display: block; }
    """

    _undrawn = False

    def show_view(self, view: Any) -> None:
        super().show_view(view)
        if self.display:
            self.draw(view)
        else:
            # Hidden (a short terminal): drawing its tables would still lay
            # the screen out as their rows come and go, and a refresh of a
            # widget off screen makes Textual place every widget again.
            self._undrawn = True

    def on_show(self) -> None:
        if self._undrawn and self.view is not None and self.unavailable is None:
            self._undrawn = False
            self.draw(self.view)

    def show_unavailable(self, reason: str, remedy: str) -> None:
        if self.unavailable == (reason, remedy):
            # Told again each tick: updating the message lays the whole screen out.
            return
        super().show_unavailable(reason, remedy)
        self.border_subtitle = ""
        self.query_one(".pane-message", Static).update(
            escape(reason) + (f"\nto fix: {escape(remedy)}" if remedy else "")
        )

    def draw(self, view: Any) -> None:
        """Show `view`: the subclass's tables."""
        raise NotImplementedError

def feed(panes: Iterable[Pane], frame: Frame, views: Views) -> None:
    """Give each pane its probe's view, or why there is none."""
    for pane in panes:
        if pane.JOINS:
            pane.joined = Views({spec.name: views[spec.name] for spec in pane.JOINS if spec.name in views})
            pane.joined_unavailable = {
                spec.name: frame.unavailable[spec.name] for spec in pane.JOINS if spec.name in frame.unavailable
            }
        name = pane.PROBE.name
        view = views.get(pane.PROBE)
        if view is not None:
            pane.show_view(view)
        elif name in frame.unavailable:
            pane.show_unavailable(*frame.unavailable[name])
        elif name in views.failed:
            pane.show_unavailable(*views.failed[name])
        elif name not in frame.samples:
            # A recording made without this probe, or fixed frames.
            pane.show_absent(f"no {name} data in what is shown")


class DetailPane(MessagePane):
    """A pane of a table and, beside it, the detail of the row under its cursor.

    The detail is drawn again when the cursor moves, and when the pane's
    width changes (its bars and wrapped lines fit the width, known once the
    pane is laid out).
    """

    def draw_detail(self) -> None:
        """Show the detail of the table's selected row."""
        raise NotImplementedError

    def on_resize(self) -> None:
        if self.view is not None:
            self.call_after_refresh(self.draw_detail)

    def on_line_table_cursor_moved(self, event: Message) -> None:
        event.stop()
        if self.view is not None:
            self.draw_detail()


class Lines(Static):
    """Markup text that never wraps: its height is its line count.

    Static.update lays the whole screen out again, so that a longer text
    gets its height, which re-renders every widget. Text whose lines the
    caller fits to the width (wrapped by hand, or cut with an ellipsis)
    needs that only when its number of lines changes: every tick's numbers
    then repaint this widget alone.
    """

    DEFAULT_CSS = """
    Lines { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *args: Any, keep_height: bool = False, **kwargs: Any) -> None:
        """`keep_height`: never shrink (pad with blank lines) until `reset_height` or a new width.

        For text whose line count moves from tick to tick, such as a
        process's stacks: it then lays the screen out only when it grows.
        """
        super().__init__(*args, **kwargs)
        self.text: str | None = None
        self._keep_height = keep_height
        self._lines = 0
        self._width = 0

    def _scrolled_out(self) -> bool:
        """Laid out, where its scrolling parent's view does not reach."""
        parent = self.parent
        if not isinstance(parent, ScrollableContainer):
            return False
        region = self.region
        return bool(region) and not region.overlaps(parent.region)

    def reset_height(self) -> None:
        self._lines = 0

    def set_text(self, text: str) -> None:
        lines = text.count("\n") + 1
        if self._width != self.content_size.width:
            # lines fitted to another width: the height kept is theirs
            self._width = self.content_size.width
            self.reset_height()
        if self._keep_height and lines < self._lines:
            text += "\n" * (self._lines - lines)
            lines = self._lines
        if text == self.text:
            return
        if self.text is not None and self._scrolled_out():
            # Refreshing a widget out of the screen's view makes Textual work
            # out every widget's place again at the next frame (about 2 ms
            # with every pane): the owner sets the text again when it scrolls
            # into view.
            return
        layout = self.text is None or lines != self._lines
        self.text = text
        self._lines = lines
        self.update(text, layout=layout)

