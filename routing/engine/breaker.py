"""Circuit breakers: stop calling an endpoint that keeps failing, and try it again later.

Each endpoint has one breaker, driven by the endpoint snapshot's settings:

- **closed**: calls go through; each outcome is counted in per-second buckets. When at
  least `breaker_min_requests` calls in the last `breaker_window_s` seconds failed at a
  share of `breaker_failure_rate` or more, the breaker opens.
- **open**: no calls for `breaker_open_s` seconds; the cascade skips the tier (or calls
  the endpoint's fallback).
- **half-open**: the wait is over and exactly one caller gets a trial call. Its success
  closes the breaker with a fresh window; its failure opens it again. A trial that never
  reports back (its worker died, its client went away) is given to another caller once
  it could no longer be running: after the endpoint's connect and read timeouts.

A call already in flight when the breaker opened may report during the half-open state;
its outcome decides like the trial's would. It is as much evidence as the trial is.

`Breaker` is the state machine with the time passed in; `MemoryBreakers` keeps one per
endpoint in the process (embedded mode, tests). `routing.limits.breakers` runs the same rules in
Redis so that every worker shares them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from routing.engine.types import EndpointSnapshot

# A long window is counted in coarser buckets, so one record never sums more than this many.
MAX_BUCKETS = 60
# How much longer than its timeouts a trial call is given before another caller may try.
TRIAL_MARGIN_S = 1.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def bucket_width_s(window_s: int) -> int:
    """Seconds per bucket: one second, or coarser for windows over `MAX_BUCKETS` seconds."""
    return max(1, math.ceil(window_s / MAX_BUCKETS))


def trial_lease_s(endpoint: EndpointSnapshot) -> float:
    """How long one trial call may take before it is presumed lost."""
    return endpoint.connect_timeout_s + endpoint.read_timeout_s + TRIAL_MARGIN_S


@dataclass(slots=True)
class Breaker:
    """One endpoint's breaker; every method takes the current time in seconds."""

    state: BreakerState = BreakerState.CLOSED
    open_until: float = 0.0
    trial_until: float = 0.0
    # Bucket index (time // width) → [calls, failures].
    buckets: dict[int, list[int]] = field(default_factory=dict)

    def allow(self, endpoint: EndpointSnapshot, now: float) -> bool:
        """Whether a call may go out now; in half-open state, True for the trial caller only."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now < self.open_until:
            return False
        if self.state is BreakerState.HALF_OPEN and now < self.trial_until:
            return False
        self.state = BreakerState.HALF_OPEN
        self.trial_until = now + trial_lease_s(endpoint)
        return True

    def record(self, endpoint: EndpointSnapshot, ok: bool, now: float) -> bool:
        """Count one call's outcome; True while further calls may go out (the breaker is closed)."""
        if self.state is BreakerState.HALF_OPEN and ok:
            self._close()
        elif self.state is BreakerState.HALF_OPEN:
            self._open(endpoint, now)
        elif self.state is BreakerState.CLOSED:
            calls, failures = self._count(endpoint, ok, now)
            if not ok and tripped(endpoint, calls, failures):
                self._open(endpoint, now)
        # Open: late outcomes of calls made before it opened change nothing.
        return self.state is BreakerState.CLOSED

    def seen_at(self, now: float) -> BreakerState:
        """The state as a dashboard shows it: an open breaker whose wait is over is half-open."""
        if self.state is BreakerState.OPEN and now >= self.open_until:
            return BreakerState.HALF_OPEN
        return self.state

    def _count(self, endpoint: EndpointSnapshot, ok: bool, now: float) -> tuple[int, int]:
        """Add the outcome to its bucket, drop buckets out of the window; the window's totals."""
        width = bucket_width_s(endpoint.breaker_window_s)
        current = int(now // width)
        oldest = current - math.ceil(endpoint.breaker_window_s / width) + 1
        bucket = self.buckets.setdefault(current, [0, 0])
        bucket[0] += 1
        bucket[1] += 0 if ok else 1
        for index in [i for i in self.buckets if i < oldest]:
            del self.buckets[index]
        return sum(b[0] for b in self.buckets.values()), sum(b[1] for b in self.buckets.values())

    def _open(self, endpoint: EndpointSnapshot, now: float) -> None:
        self.state = BreakerState.OPEN
        self.open_until = now + endpoint.breaker_open_s
        self.buckets.clear()

    def _close(self) -> None:
        # A fresh window: the failures that opened it must not open it again at once.
        self.state = BreakerState.CLOSED
        self.buckets.clear()


def tripped(endpoint: EndpointSnapshot, calls: int, failures: int) -> bool:
    """Whether a window with these totals opens the breaker."""
    return calls >= max(endpoint.breaker_min_requests, 1) and failures >= endpoint.breaker_failure_rate * calls


class MemoryBreakers:
    """Every endpoint's breaker in this process: embedded mode's board, and the tests'.

    Nothing here awaits, so each call is atomic within the event loop.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[int, Breaker] = {}

    async def allow(self, endpoint: EndpointSnapshot) -> bool:
        breaker = self._breakers.get(endpoint.id)
        return breaker is None or breaker.allow(endpoint, self._clock())

    async def record(self, endpoint: EndpointSnapshot, ok: bool) -> bool:
        breaker = self._breakers.setdefault(endpoint.id, Breaker())
        return breaker.record(endpoint, ok, self._clock())

    async def states(self, endpoint_ids: Iterable[int]) -> dict[int, BreakerState]:
        """Each endpoint's state by id; one never called is closed."""
        now = self._clock()
        closed = Breaker()
        return {i: self._breakers.get(i, closed).seen_at(now) for i in endpoint_ids}
