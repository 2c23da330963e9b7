"""Widgets drawn through TextLines keep their lines between refreshes: a new theme must still reach them."""

from __future__ import annotations

from support.harness import make_app, until_drawn

SIZE = (160, 48)


def screen_cells(app) -> list[list[tuple[str, str | None, str | None, bool]]]:
    """Each cell of the screen: its character, foreground, background and boldness."""
    rows = []
    for strip in app.screen._compositor.render_strips():
        row = []
        for segment in strip:
            style = segment.style
            colour = str(style.color.get_truecolor()) if style and style.color else None
            background = str(style.bgcolor.get_truecolor()) if style and style.bgcolor else None
            row += [(ch, colour, background, bool(style and style.bold)) for ch in segment.text]
        rows.append(row)
    return rows


async def test_a_theme_chosen_while_running_redraws_every_line_in_its_colours() -> None:
    switched_app = make_app(theme="orac-dark")
    async with switched_app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, switched_app)
        dark = screen_cells(switched_app)
        switched_app.theme = "orac-light"
        await pilot.pause()
        switched = screen_cells(switched_app)
    fresh_app = make_app(theme="orac-light")
    async with fresh_app.run_test(size=SIZE) as pilot:
        await until_drawn(pilot, fresh_app)
        fresh = screen_cells(fresh_app)
    assert switched != dark
    assert [y for y in range(len(fresh)) if fresh[y] != switched[y]] == []
