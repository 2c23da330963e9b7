"""orac's themes as Textual Theme objects, and the app's stylesheet beside them.

Widgets style themselves with theme variables only ($primary, $error, ...),
so a theme changes every colour on screen, bars included.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("orac.tcss")

ORAC_DARK = Theme(
    name="orac-dark",
    primary="#5FAFD7",
    secondary="#AF87D7",
    accent="#FFAF5F",
    warning="#FFD75F",
    error="#FF5F5F",
    success="#87D75F",
    foreground="#D0D0D0",
    background="#121212",
    surface="#1C1C1C",
    panel="#262626",
    dark=True,
)

ORAC_LIGHT = Theme(
    name="orac-light",
    primary="#005F87",
    secondary="#5F00AF",
    accent="#AF5F00",
    warning="#AF8700",
    error="#D70000",
    success="#008700",
    foreground="#1C1C1C",
    background="#FAFAFA",
    surface="#EEEEEE",
    panel="#E4E4E4",
    dark=False,
)

# Pure colours at full contrast for projectors, bright rooms and low vision.
ORAC_HIGH_CONTRAST = Theme(
    name="orac-high-contrast",
    primary="#00FFFF",
    secondary="#FF00FF",
    accent="#FFFF00",
    warning="#FFFF00",
    error="#FF0000",
    success="#00FF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#000000",
    dark=True,
    text_alpha=1.0,
)

THEMES: dict[str, Theme] = {t.name: t for t in (ORAC_DARK, ORAC_LIGHT, ORAC_HIGH_CONTRAST)}
DEFAULT_THEME = ORAC_DARK.name
