"""Log2 histograms drawn as bars of text, one line per bucket, series side by side."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape

from .format import human_duration_ns, human_rate

BUCKET_LABEL_WIDTH = 7
MIN_BAR_WIDTH, MAX_BAR_WIDTH = 6, 16
BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"
# " 12.3k": a bucket's count per second after its bar
COUNT_WIDTH = 7


def bar(count: int, peak: int, width: int) -> str:
    """`count` of `peak` as a bar `width` cells long, in eighths of a cell."""
    eighths = round(width * 8 * count / peak) if peak else 0
    if count and not eighths:
        eighths = 1  # a bucket that is not empty always shows
    full, part = divmod(eighths, 8)
    return ("█" * full + (BAR_EIGHTHS[part] if part else "")).ljust(width)


def literal(text: str) -> str:
    """`text` as markup that shows it as it is, even cut short: rich's escape
    leaves a "[" without its "]" alone, and the markup after it then closes
    the wrong tag."""
    return text.replace("\\", "\\\\").replace("[", "\\[")


def histogram_lines(
    series: Sequence[tuple[str, Sequence[int], str]],
    width: int,
    label: str,
    empty: str,
    max_bar_width: int = MAX_BAR_WIDTH,
    rate_scale: float | None = None,
    span: tuple[int, int] | None = None,
) -> str:
    """Log2 latency histograms side by side as markup, `width` columns wide.

    `series`: (name, buckets, colour variable) each; bucket i holds values in
    [2**i, 2**(i+1)) ns. One line per bucket from the first busy one to the
    last, labelled with its lower bound; each series is scaled to its own
    peak. `empty` is shown when no series has a count. With `rate_scale`
    (1 / the interval in seconds), each bar is followed by its count per second.
    `span` (first, last): buckets shown even when empty, so that a histogram
    redrawn every tick keeps its height.
    """
    used = [i for _, hist, _ in series for i, n in enumerate(hist) if n]
    if not used:
        return f"[$foreground-muted]{escape(empty)}[/]"
    if span is not None:
        used += span
    count_width = COUNT_WIDTH if rate_scale is not None else 0
    room = (width - BUCKET_LABEL_WIDTH - len(series)) // len(series) - count_width
    bar_width = max(MIN_BAR_WIDTH, min(max_bar_width, room))
    names = " ".join(literal(name[:bar_width].ljust(bar_width)) for name, _, _ in series).rstrip()
    lines = [f"[$foreground-muted]{label:>{BUCKET_LABEL_WIDTH}} {names}[/]"]
    peaks = [max(hist) for _, hist, _ in series]
    for slot in range(min(used), max(used) + 1):
        text = human_duration_ns(0 if slot == 0 else 1 << slot)
        bars = " ".join(
            f"[{colour}]{bar(hist[slot], peak, bar_width)}[/]"
            + (f"{human_rate(hist[slot] * rate_scale):>{count_width}}" if rate_scale is not None else "")
            for (_, hist, colour), peak in zip(series, peaks, strict=True)
        )
        lines.append(f"{text:>{BUCKET_LABEL_WIDTH}} {bars}")
    return "\n".join(lines)
