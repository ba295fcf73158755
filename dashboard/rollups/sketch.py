"""A mergeable latency sketch: percentiles across workers and buckets with 1 % error.

Latencies are counted in logarithmic bins (DDSketch's mapping), so two sketches merge by
adding their bins' counts: minute rows written by many flushes, and the minutes of an hour,
add up exactly. A sketch is a plain `{"bin index": count}` dict, stored as JSON on each
rollup row. See docs/dashboard.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Sketch = dict[str, int]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
# Anything faster than this is counted as this: no caller can tell 10 µs from 1 µs.
MIN_MS = 0.01


def bin_index(ms: float) -> int:
    return math.ceil(math.log(max(ms, MIN_MS)) / _LOG_GAMMA)


def bin_value(index: int) -> float:
    """The value that is within the relative accuracy of every value in the bin."""
    return 2 * GAMMA**index / (GAMMA + 1)


def sketch_add(sketch: Sketch, ms: float, count: int = 1) -> None:
    key = str(bin_index(ms))
    sketch[key] = sketch.get(key, 0) + count


def sketch_merge(into: Sketch, other: Mapping[str, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def sketch_of(latencies: Iterable[float]) -> Sketch:
    sketch: Sketch = {}
    for ms in latencies:
        sketch_add(sketch, ms)
    return sketch


def sketch_count(sketch: Mapping[str, int]) -> int:
    return sum(sketch.values())


def sketch_quantile(sketch: Mapping[str, int], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) of the counted latencies, or None for an empty sketch."""
    total = sketch_count(sketch)
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for index in sorted(int(key) for key in sketch):
        seen += sketch[str(index)]
        if seen > rank:
            return bin_value(index)
    return bin_value(max(int(key) for key in sketch))  # unreachable: seen reaches total
