"""Log2 histograms drawn as bars of text, one line per bucket, series side by side."""

from __future__ import annotations

from typing import Sequence

from rich.markup import escape

from .format import human_duration_ns

BUCKET_LABEL_WIDTH = 7
MIN_BAR_WIDTH, MAX_BAR_WIDTH = 6, 16
BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(count: int, peak: int, width: int) -> str:
    """`count` of `peak` as a bar `width` cells long, in eighths of a cell."""
    eighths = round(width * 8 * count / peak) if peak else 0
    if count and not eighths:
        eighths = 1  # a bucket that is not empty always shows
    full, part = divmod(eighths, 8)
    return ("█" * full + (BAR_EIGHTHS[part] if part else "")).ljust(width)


def histogram_lines(series: Sequence[tuple[str, Sequence[int], str]], width: int, label: str, empty: str) -> str:
    """Log2 latency histograms side by side as markup, `width` columns wide.

    `series`: (name, buckets, colour variable) each; bucket i holds values in
    [2**i, 2**(i+1)) ns. One line per bucket from the first busy one to the
    last, labelled with its lower bound; each series is scaled to its own
    peak. `empty` is shown when no series has a count.
    """
    used = [i for _, hist, _ in series for i, n in enumerate(hist) if n]
    if not used:
        return f"[$foreground-muted]{escape(empty)}[/]"
    bar_width = max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, (width - BUCKET_LABEL_WIDTH - len(series)) // len(series)))
    names = " ".join(f"{escape(name[:bar_width]):<{bar_width}}" for name, _, _ in series).rstrip()
    lines = [f"[$foreground-muted]{label:>{BUCKET_LABEL_WIDTH}} {names}[/]"]
    peaks = [max(hist) for _, hist, _ in series]
    for slot in range(min(used), max(used) + 1):
        text = human_duration_ns(0 if slot == 0 else 1 << slot)
        bars = " ".join(
            f"[{colour}]{bar(hist[slot], peak, bar_width)}[/]" for (_, hist, colour), peak in zip(series, peaks)
        )
        lines.append(f"{text:>{BUCKET_LABEL_WIDTH}} {bars}")
    return "\n".join(lines)
