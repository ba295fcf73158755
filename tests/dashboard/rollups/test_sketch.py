"""The latency sketch: percentiles within 1 %, and merging is the same as counting together."""

from __future__ import annotations

import random

import pytest

from dashboard.rollups.sketch import RELATIVE_ACCURACY, sketch_merge, sketch_of, sketch_quantile


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_it_reads_percentiles_within_one_percent(q):
    rng = random.Random(7)
    latencies = [rng.lognormvariate(6, 0.8) for _ in range(20_000)]

    estimate = sketch_quantile(sketch_of(latencies), q)

    assert estimate == pytest.approx(exact_quantile(latencies, q), rel=RELATIVE_ACCURACY * 1.01)


def test_merged_sketches_answer_as_one_sketch_of_all_the_values():
    rng = random.Random(3)
    workers = [[rng.uniform(50, 5000) for _ in range(1000)] for _ in range(4)]
    merged: dict[str, int] = {}
    for latencies in workers:
        sketch_merge(merged, sketch_of(latencies))

    together = sketch_of([ms for latencies in workers for ms in latencies])

    assert merged == together
    assert sketch_quantile(merged, 0.99) == sketch_quantile(together, 0.99)


def test_an_empty_sketch_has_no_percentiles():
    assert sketch_quantile({}, 0.5) is None


def test_zero_and_sub_millisecond_latencies_are_counted():
    sketch = sketch_of([0.0, 0.001, 0.5])

    assert sum(sketch.values()) == 3
    assert sketch_quantile(sketch, 1.0) == pytest.approx(0.5, rel=0.011)
