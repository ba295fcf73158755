"""Prometheus metrics: counted on the hot path in shared memory, summed at scrape time.

Each worker counts in memory-mapped files (prometheus_client's multiprocess mode) and any
worker's `/metrics` sums them all. Counted: every record as it is made durable
(`record_observed`) and every routing API response (`observed_http`). Money is counted as
exact integers and turned into dollars only in the exposition. See docs/hotpath.md.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# From a cache hit (well under a millisecond) to a slow strong tier.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The routing API's paths, the only values of the `route` label (anything else: "other"),
# so a client probing random URLs cannot grow the label set.
ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/v1/feedback"})
# A response never started: the client went away first (nginx's code for it).
CLIENT_CLOSED = 499
SUB_MICRO_UNITS = 10_000  # 1e-10 dollars in a micro-dollar
SUB_MICRO = Decimal("1e-10")
MICRO = Decimal("1e-6")

_requests = Counter(
    "cascadeops_requests", "Routed requests, by policy, record status and cache", ["policy", "status", "cache"]
)
_escalations = Counter("cascadeops_escalations", "Answers judged too weak, so a stronger tier was called", ["policy"])
_cache_hits = Counter("cascadeops_cache_hits", "Requests answered from the cache", ["policy", "kind"])
_tokens = Counter("cascadeops_tokens", "Tokens of every attempt", ["policy", "direction"])
_tier_latency = Histogram(
    "cascadeops_tier_latency_seconds", "One call to one tier", ["policy", "tier", "model"], buckets=LATENCY_BUCKETS_S
)
_gateway_latency = Histogram(
    "cascadeops_gateway_latency_seconds",
    "From the request to the last byte of the answer, as the gateway saw it",
    ["route"],
    buckets=LATENCY_BUCKETS_S,
)
_responses = Counter("cascadeops_http_responses", "Routing API responses, by route and status", ["route", "code"])
_rate_limited = Counter("cascadeops_rate_limited", "Requests refused by an API key's rate limit", ["type"])
# `budget` is the budget's id (as many as the operators configured), `reason` one of
# "exhausted" and "too_large": a bounded label set.
_budget_refusals = Counter(
    "cascadeops_budget_refusals", "Requests refused by a blocking budget, by budget id and reason", ["budget", "reason"]
)
_dead_letters = Counter(
    "cascadeops_record_dead_letters", "Request records the flusher could not store, set aside", ["error"]
)
# Money, as two exact integer counters each; `exposition` turns them into dollars.
MONEY = {
    "cascadeops_cost_usd": "What routed requests cost, every tier tried included (USD)",
    "cascadeops_cost_avoided_usd": "What cache hits would have cost (USD)",
}
_money = {
    name: (
        Counter(f"{name}_micro", f"{doc}: whole micro-dollars (internal)", ["policy"]),
        Counter(f"{name}_sub_micro", f"{doc}: the rest, in 1e-10 dollars (internal)", ["policy"]),
    )
    for name, doc in MONEY.items()
}


def multiprocess_mode() -> bool:
    return "MultiProcessValue" in values.ValueClass.__qualname__


if not multiprocess_mode():  # pragma: no cover - only if prometheus_client was imported before the settings
    logger.warning("prometheus_client is not in multiprocess mode; /metrics shows only the worker that answers it")


# How long counts may wait in a worker's memory before they reach the shared files.
FLUSH_INTERVAL_S = 1.0


class _Batch:
    """Increments summed in this process and written to the shared files at most every interval.

    Each write to a multiprocess value is a locked `mmap` write, about a dozen per request;
    summed per value, a second's worth of requests costs one write per labelled series.
    Flushed by a timer on the event loop, before each exposition, and at exit; without a
    running loop (a Celery task, a script) each increment is written at once.
    """

    def __init__(self) -> None:
        self.pending: dict[Any, float] = {}
        self.lock = threading.Lock()
        self.flushed_at = time.monotonic()
        self.timer_loop: asyncio.AbstractEventLoop | None = None

    def add(self, increments: Iterable[tuple[Any, float]]) -> None:
        """Add each (value, amount); one call per request keeps the lock and the clock to one each."""
        with self.lock:
            pending = self.pending
            for value, amount in increments:
                pending[value] = pending.get(value, 0.0) + amount
        self._flush_soon()

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
            self.flushed_at = time.monotonic()
            self.timer_loop = None
        for value, amount in pending.items():
            value.inc(amount)

    def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if time.monotonic() - self.flushed_at >= FLUSH_INTERVAL_S:
            self.flush()
        elif self.timer_loop is not loop:
            # Per loop: a timer on a loop that has since closed never fires.
            self.timer_loop = loop
            loop.call_later(FLUSH_INTERVAL_S, self.flush)


_batch = _Batch()
atexit.register(_batch.flush)


def flush() -> None:
    """Write the counts this process holds to the shared files (an exposition does it first)."""
    _batch.flush()


Increments = list[tuple[Any, float]]


def _inc(into: Increments, child: Any, amount: float = 1.0) -> None:
    """`child.inc(amount)` for a counter's child, added to `into` for `_batch`."""
    into.append((child._value, amount))


def _observe(into: Increments, child: Any, amount: float) -> None:
    """`child.observe(amount)` for a histogram's child: its sum and its one bucket.

    prometheus_client's histogram keeps one value per bucket (not cumulative) and adds them
    up when collected; an observation lands in the first bucket whose bound is not below it.
    """
    into.append((child._sum, amount))
    into.append((child._buckets[bisect.bisect_left(child._upper_bounds, amount)], 1.0))


class _Children:
    """A metric's children by label values: a dict lookup instead of `labels()`'s lock and checks."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *label_values: str) -> Any:
        child = self.children.get(label_values)
        if child is None:
            child = self.children[label_values] = self.metric.labels(*label_values)
        return child


requests_by = _Children(_requests)
escalations_by = _Children(_escalations)
cache_hits_by = _Children(_cache_hits)
tokens_by = _Children(_tokens)
tier_latency_by = _Children(_tier_latency)
gateway_latency_by = _Children(_gateway_latency)
responses_by = _Children(_responses)
money_by = {name: (_Children(micro), _Children(sub)) for name, (micro, sub) in _money.items()}


def cost_units(amount: Decimal) -> tuple[int, int]:
    """Whole micro-dollars and the remaining 1e-10 dollars of `amount` (rounded to 1e-10)."""
    return divmod(int(amount.scaleb(10).to_integral_value()), SUB_MICRO_UNITS)


def _add_money(into: Increments, name: str, policy: str, amount: Decimal) -> None:
    micro, sub = cost_units(amount)
    micro_by, sub_by = money_by[name]
    if micro:
        _inc(into, micro_by(policy), micro)
    if sub:
        _inc(into, sub_by(policy), sub)


def record_observed(payload: MutableMapping[str, Any]) -> None:
    """Count a request record (as `routing.records.recorder` makes it durable). Never raises."""
    try:
        _count_record(payload)
    except Exception:
        logger.exception("Could not count record %s in the metrics", payload.get("id"))


def _count_record(payload: MutableMapping[str, Any]) -> None:
    policy = str(payload["policy_name"])
    cache = payload.get("cache") or ""
    into: Increments = []
    _inc(into, requests_by(policy, str(payload["status"]), cache or "none"))
    _add_money(into, "cascadeops_cost_usd", policy, Decimal(payload["cost"]))
    if cache:
        _inc(into, cache_hits_by(policy, cache))
        _add_money(into, "cascadeops_cost_avoided_usd", policy, Decimal(payload.get("cost_avoided") or 0))
    if payload["escalations"]:
        _inc(into, escalations_by(policy), payload["escalations"])
    _inc(into, tokens_by(policy, "input"), payload["input_tokens"])
    _inc(into, tokens_by(policy, "output"), payload["output_tokens"])
    for a in payload["attempts"]:
        _observe(into, tier_latency_by(policy, str(a["tier"]), str(a["model"])), a["latency_ms"] / 1000)
    _batch.add(into)


def rate_limited(limit_type: str) -> None:
    _rate_limited.labels(limit_type).inc()


def budget_refused(budget_id: int, reason: str) -> None:
    """Count a request a blocking budget refused; `reason` is "exhausted" or "too_large"."""
    _budget_refusals.labels(str(budget_id), reason).inc()


def dead_lettered(error: str) -> None:
    """Count a record the flusher set aside; `error` is the exception's class name."""
    _dead_letters.labels(error).inc()


def http_observed(path: str, status: int, seconds: float) -> None:
    route = path if path in ROUTES else "other"
    into: Increments = []
    _inc(into, responses_by(route, str(status)))
    _observe(into, gateway_latency_by(route), seconds)
    _batch.add(into)


ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def observed_http(app: ASGIApp) -> ASGIApp:
    """`app` (the routing API), counting each response's status and the gateway's total time."""

    async def observed(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = CLIENT_CLOSED

        async def send_and_note(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            http_observed(scope["path"], status, time.perf_counter() - started)

    return observed


# --- exposition ---------------------------------------------------------------------------


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """Every worker's metrics in Prometheus' text format, money in dollars, plus `extra`.

    Reads the multiprocess files: call it off the event loop.
    """
    flush()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(_Exposed(registry, list(extra)))


class _Exposed:
    """The summed families with the money counters turned into dollars."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry = registry
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        parts: dict[str, dict[str, Decimal]] = {name: {} for name in MONEY}  # name → policy → USD
        for family in self.registry.collect():
            money = _money_part(family.name)
            if money is None:
                yield family
                continue
            name, unit = money
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    policy = sample.labels.get("policy", "")
                    parts[name][policy] = parts[name].get(policy, Decimal(0)) + int(sample.value) * unit
        for name, amounts in parts.items():
            dollars = CounterMetricFamily(name, MONEY[name], labels=["policy"])
            for policy, amount in sorted(amounts.items()):
                dollars.add_metric([policy], float(amount))
            yield dollars
        yield from self.extra


def _money_part(family: str) -> tuple[str, Decimal] | None:
    for name in MONEY:
        if family == f"{name}_micro":
            return name, MICRO
        if family == f"{name}_sub_micro":
            return name, SUB_MICRO
    return None
