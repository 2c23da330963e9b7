"""Log2 latency histograms, as the eBPF programs count them: where a percentile lies.

Bucket i counts values in [2**i, 2**(i+1)) ns (bucket 0 from 0); the last
bucket takes everything longer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate


@dataclass(frozen=True, slots=True)
class LatencyBucket:
    """Where a percentile of a log2 latency histogram lies: in [low_ns, high_ns).

    A log2 histogram knows only which bucket each call fell in, so this range
    is all it can honestly say of a percentile: sleeps of 10 ms are "8.4 to
    16.8 ms", where interpolating inside the bucket made them 12.58 ms.
    `high_ns` is None for the last bucket, which is open-ended.
    """

    low_ns: int
    high_ns: int | None


@lru_cache(maxsize=4)
def _buckets(slots: int) -> tuple[LatencyBucket, ...]:
    """Every bucket of a histogram of `slots` slots: the same few objects, not new ones per percentile."""
    last = slots - 1
    return tuple(
        LatencyBucket(0 if slot == 0 else 1 << slot, None if slot == last else 1 << (slot + 1)) for slot in range(slots)
    )


def log2_quantile_bucket(hist: Sequence[int], q: float) -> LatencyBucket | None:
    """The bucket of a log2 histogram holding its q quantile (0 < q <= 1).

    Bucket i counts values in [2**i, 2**(i+1)) ns (bucket 0 from 0); the q
    quantile is in the first bucket where the count of values up to and
    including it reaches q x total. None for an empty histogram.
    """
    # Cumulative counts and a bisection, both in C: a busy tick asks this
    # of thousands of histograms.
    seen = list(accumulate(hist))
    total = seen[-1] if seen else 0
    if total == 0:
        return None
    # The first bucket whose cumulative count reaches the rank also has a
    # count of its own: the one before it fell short.
    return _buckets(len(hist))[min(bisect_left(seen, q * total), len(hist) - 1)]
