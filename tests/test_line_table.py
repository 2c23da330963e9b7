"""LineTable: rows that change every tick redraw only what changed, and scrolling follows the rows."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.line_table import Column, LineTable

COLUMNS = [
    Column("n", "N", 6, lambda r: str(r[0]), lambda r: r[0], right=True),
    Column("text", "TEXT", 0, lambda r: r[1], lambda r: r[1]),
]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LineTable(COLUMNS, "n", lambda r: r[0])


def rows(n: int, text: str = "x") -> list[tuple[tuple[int, str], str]]:
    return [((i, text), "") for i in range(n)]


async def test_scrolling_follows_rows_that_come_and_go_while_they_overflow() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(LineTable)
        table.focus()
        table.set_rows(rows(50))
        await pilot.pause()
        assert table.show_vertical_scrollbar
        table.set_rows(rows(80))  # more rows, the scrollbar already there
        await pilot.press("end")
        await pilot.pause()
        assert table.selected == (79, "x")
        assert table.max_scroll_y == 81 - 10 and table.scroll_y == table.max_scroll_y
        assert table.vertical_scrollbar.window_virtual_size == 81
        table.set_rows(rows(30))  # fewer: the view comes back within them
        await pilot.pause()
        assert table.selected == (29, "x") and table.scroll_y <= table.max_scroll_y == 31 - 10
        table.set_rows(rows(5))  # all fit: no scrollbar
        await pilot.pause()
        assert not table.show_vertical_scrollbar and table.scroll_y == 0


async def test_only_changed_lines_are_drawn_again(monkeypatch) -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(LineTable)
        table.set_rows(rows(5))
        await pilot.pause()
        drawn: list[int] = []
        original = LineTable.render_line

        def render_line(self, y: int):
            drawn.append(y)
            return original(self, y)

        monkeypatch.setattr(LineTable, "render_line", render_line)
        table.set_rows(rows(5))  # the same text
        await pilot.pause()
        assert drawn == []
        changed = rows(5)
        changed[2] = ((2, "new"), "")
        table.set_rows(changed)
        await pilot.pause()
        assert drawn == [3]  # row 2, under the header
        assert "new" in "".join(segment.text for segment in table.render_line(3))
