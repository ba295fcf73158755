"""The circuit breaker's state machine, on a clock the tests move."""

from __future__ import annotations

import dataclasses

from routing.engine.breaker import Breaker, BreakerState, MemoryBreakers, bucket_width_s, trial_lease_s
from routing.engine.types import EndpointSnapshot
from testing.fakes import FakeClock, endpoint

# Opens when at least 4 calls in the last 10 s failed at a share of 50 % or more.
EP = endpoint(1, breaker_failure_rate=0.5, breaker_min_requests=4, breaker_window_s=10, breaker_open_s=30)


def record_all(breaker: Breaker, outcomes: str, now: float, ep: EndpointSnapshot = EP) -> None:
    """Record 'o' (ok) and 'x' (failure) outcomes at time `now`."""
    for outcome in outcomes:
        breaker.record(ep, outcome == "o", now)


def opened(at: float = 0.0) -> Breaker:
    breaker = Breaker()
    record_all(breaker, "xxxx", at)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_it_stays_closed_below_the_minimum_requests_even_if_every_call_failed() -> None:
    breaker = Breaker()
    record_all(breaker, "xxx", 0.0)

    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow(EP, 0.0)


def test_it_opens_when_the_failure_share_reaches_the_rate_after_the_minimum_requests() -> None:
    breaker = Breaker()
    record_all(breaker, "oox", 0.0)
    assert breaker.record(EP, False, 0.5) is False  # 2 of 4 failed: exactly the rate

    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(EP, 1.0)


def test_it_stays_closed_below_the_failure_rate() -> None:
    breaker = Breaker()
    record_all(breaker, "ooooox", 0.0)
    assert breaker.record(EP, False, 0.0) is True  # 2 of 7

    assert breaker.state is BreakerState.CLOSED


def test_failures_that_slid_out_of_the_window_do_not_count() -> None:
    breaker = Breaker()
    record_all(breaker, "xxx", 0.0)
    breaker.record(EP, False, 10.0)  # the first three are 10 s old: out of the 10 s window

    assert breaker.state is BreakerState.CLOSED
    record_all(breaker, "xxx", 10.5)
    assert breaker.state is BreakerState.OPEN


def test_an_open_breaker_refuses_calls_until_its_wait_is_over_then_lets_one_trial_through() -> None:
    breaker = opened(at=100.0)

    assert not breaker.allow(EP, 129.9)
    assert breaker.allow(EP, 130.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(EP, 130.0)  # one trial only
    assert not breaker.allow(EP, 131.0)


def test_a_successful_trial_closes_it_with_a_fresh_window() -> None:
    breaker = opened()
    assert breaker.allow(EP, 30.0)

    assert breaker.record(EP, True, 31.0) is True
    assert breaker.state is BreakerState.CLOSED
    record_all(breaker, "xxx", 31.0)  # the failures that opened it are forgotten
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_trial_opens_it_for_another_wait() -> None:
    breaker = opened()
    assert breaker.allow(EP, 30.0)

    assert breaker.record(EP, False, 31.0) is False
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(EP, 60.9)
    assert breaker.allow(EP, 61.0)


def test_a_trial_that_never_reports_back_is_given_to_another_caller_after_its_timeouts() -> None:
    breaker = opened()
    assert breaker.allow(EP, 30.0)
    lease = trial_lease_s(EP)
    assert lease == EP.connect_timeout_s + EP.read_timeout_s + 1.0

    assert not breaker.allow(EP, 30.0 + lease - 0.1)
    assert breaker.allow(EP, 30.0 + lease)


def test_late_outcomes_of_calls_made_before_it_opened_change_nothing_while_open() -> None:
    breaker = opened()

    assert breaker.record(EP, True, 1.0) is False
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(EP, 1.0)


def test_the_dashboard_sees_an_open_breaker_whose_wait_is_over_as_half_open() -> None:
    breaker = opened()

    assert breaker.seen_at(29.0) is BreakerState.OPEN
    assert breaker.seen_at(30.0) is BreakerState.HALF_OPEN


def test_long_windows_are_counted_in_coarser_buckets() -> None:
    hourly = dataclasses.replace(EP, breaker_window_s=3600, breaker_min_requests=3)
    breaker = Breaker()
    breaker.record(hourly, False, 0.0)
    breaker.record(hourly, True, 3599.0)

    assert (bucket_width_s(30), bucket_width_s(60), bucket_width_s(61), bucket_width_s(3600)) == (1, 1, 2, 60)
    assert len(breaker.buckets) == 2
    breaker.record(hourly, False, 3600.0)  # the first failure left the hour (else 2 of 3 failed)
    assert breaker.state is BreakerState.CLOSED
    assert len(breaker.buckets) == 2


async def test_the_in_process_board_keeps_one_breaker_per_endpoint() -> None:
    clock = FakeClock()
    board = MemoryBreakers(clock)
    other = endpoint(2)
    for _ in range(4):
        await board.record(EP, False)

    assert not await board.allow(EP)
    assert await board.allow(other)
    assert await board.states([1, 2]) == {1: BreakerState.OPEN, 2: BreakerState.CLOSED}
    clock.advance(30)
    assert await board.states([1]) == {1: BreakerState.HALF_OPEN}
    assert await board.allow(EP)
    assert not await board.allow(EP)
