"""Chaos: 50 clients against two gateway workers while the upstream fails and processes die.

The upstream injects 10% errors (500/503), 5% timeouts and latency spikes, and one outage
of the cheap model that must open its circuit breaker. During the run one gateway worker
and the record flusher are each SIGKILLed once and started again. Afterwards, with the
flusher drained:

- every request a client saw answered (200 with `x-request-id`) is recorded exactly once,
  and the ledger counts each routed record once (a refused one has no ledger line);
- every 429 a client saw is recorded once as a refusal, with its reason;
- every 5xx a client saw is a request whose every tier failed (its record says so);
  connection failures happen only on the killed worker's port, around the kill;
- a breaker was seen open and, later, closed again;
- the hard budget of the capped end user was reached and its ledger spend is within it.

It needs PostgreSQL and Redis (state shared by several processes) and skips without
them. `CHAOS_SECONDS` sets the load's duration (default 60); `-m "not chaos"` leaves it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.db.models import Sum

from bench.chaos import CAPPED_USER, ROOT, BreakerWatch, Cluster, Fault, Observations, read_outcomes
from billing.models import Budget, LedgerEntry
from routing.choices import RecordStatus
from routing.limits.breakers import breaker_states
from routing.models import RequestAttempt, RequestRecord
from routing.records import buffers
from testing.factories import make_key, make_policy, openai_endpoint
from tests.conftest import subprocess_env

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
CLIENTS = 50
PRICE = Decimal("10")  # USD per 1M tokens on the cheap tier; the strong tier costs twice as much
# The upstream reports 20 prompt + 6 completion tokens: what one capped request costs on the cheap tier.
CHEAP_COST = (20 + 6) * PRICE / 1_000_000
CAPPED_AFFORDABLE = 60
# A request sent this long before a kill may still have been in flight when it came.
IN_FLIGHT_GRACE_S = 6.0
AFTER_RESTART_GRACE_S = 2.0
DRAIN_TIMEOUT_S = 40.0
CLAIM_TIMEOUT_S = 3  # a killed flusher's batch is taken over this soon


def needs_postgres_and_redis() -> None:
    if not settings.REDIS_URL or connection.vendor != "postgresql":
        pytest.skip(
            "the chaos test runs several gateway, flusher and client processes that share state: "
            "it needs DATABASE_URL=postgres://… and REDIS_URL=redis://… (CI sets both)"
        )


def chaos_policy(upstream: str) -> str:
    """Two tiers on the faulty upstream; short timeouts, one retry, breakers that trip fast."""
    resilience = {"read_timeout_s": 0.5, "connect_timeout_s": 0.5, "max_retries": 1, "breaker_failure_rate": 0.5,
                  "breaker_min_requests": 10, "breaker_window_s": 5, "breaker_open_s": 2}  # fmt: skip
    cheap = openai_endpoint("chaos-cheap", upstream, "cheap", input_price_per_m=PRICE, output_price_per_m=PRICE,
                            **resilience)  # fmt: skip
    strong = openai_endpoint("chaos-strong", upstream, "strong", input_price_per_m=2 * PRICE,
                             output_price_per_m=2 * PRICE, **resilience)  # fmt: skip
    # Threshold 0 on the cheap tier: only a failure escalates. No caching: every request is unique anyway.
    policy = make_policy("chaos", [(cheap, 0.0), (strong, 0.0)], cache_ttl_s=0)
    Budget.objects.create(
        name="capped user", scope="end_user", scope_value=CAPPED_USER, period="day", hard_action="reject",
        limit=CHEAP_COST * CAPPED_AFFORDABLE,
    )  # fmt: skip
    return make_key(policy, team="chaos", app="chaos")[1]


async def read_breakers() -> dict[str, str]:
    """The shared breakers' states as `/metrics` reports them: endpoint name → state."""
    return dict(await breaker_states())


async def close_connections() -> None:
    """Close the connections `read_breakers` opened, on the thread that opened them."""
    await sync_to_async(connections.close_all)()


def queue_depth() -> int:
    """Records made durable and not stored yet: in the Redis stream or the overflow spool."""

    return buffers.queue_depth()


def wait_until_drained(answered_ids: list[str]) -> float:
    """Seconds the flusher took to store every answered request and empty the buffers."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_S:
        if queue_depth() == 0 and RequestRecord.objects.filter(id__in=answered_ids).count() == len(answered_ids):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def run_chaos(cluster: Cluster, key: str, out: Path) -> BreakerWatch:
    """The load, with an outage, a worker kill and a flusher kill at fixed points of it."""
    watch = BreakerWatch(read_breakers, close_connections)
    watch.start()
    clients = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", "--ports", ",".join(map(str, cluster.gateway_ports)), "--key", key,
         "--clients", str(CLIENTS), "--seconds", str(CHAOS_SECONDS), "--out", str(out)],
        cwd=ROOT,
    )  # fmt: skip
    started = time.monotonic()

    def at(share: float) -> None:
        time.sleep(max(0.0, started + share * CHAOS_SECONDS - time.monotonic()))

    try:
        at(0.15)
        cluster.outage("cheap", seconds=max(5.0, 0.1 * CHAOS_SECONDS))
        at(0.40)
        cluster.kill_gateway(cluster.gateway_ports[0])
        at(0.60)
        cluster.kill_flusher(down_s=2.0)
        clients.wait(timeout=CHAOS_SECONDS + 60)
    finally:
        if clients.poll() is None:
            clients.kill()
        watch.stop()
    return watch


def record_problems(seen: Observations) -> list[str]:
    """Answered requests not recorded exactly once, and 5xx not explained by every tier failing."""
    problems = []
    answered = RequestRecord.objects.filter(id__in=list(seen.answered))
    if answered.count() != len(seen.answered):
        problems.append(
            f"{len(seen.answered) - answered.count()} of {len(seen.answered)} answered requests have no record"
        )
    not_answered = answered.exclude(status="answered").values_list("id", "status")[:5]
    if not_answered:
        problems.append(f"answered requests recorded with another status: {list(not_answered)}")
    problems += [f"a 5xx without x-request-id (unexplained): {o}" for o in seen.server_errors if not o.request_id][:5]
    ids = [o.request_id for o in seen.server_errors if o.request_id]
    failed = {str(i) for i in RequestRecord.objects.filter(id__in=ids, status="failed").values_list("id", flat=True)}
    unexplained = [i for i in ids if i not in failed]
    if unexplained:
        problems.append(f"{len(unexplained)} 5xx with no failed record, e.g. {unexplained[:3]}")
    succeeded = RequestAttempt.objects.filter(record_id__in=ids).exclude(outcome="failed").count()
    if succeeded:
        problems.append(f"{succeeded} attempts of 5xx requests did not fail: not every tier failed")
    return problems


def ledger_problems() -> list[str]:
    """The ledger counts each routed record once: requests and cost agree with the records.

    A refused request is on record with nothing spent and no ledger line (docs/records.md).
    """
    routed = RequestRecord.objects.exclude(status=RecordStatus.REFUSED)
    records = routed.aggregate(cost=Sum("cost"))
    ledger = LedgerEntry.objects.aggregate(n=Sum("requests"), cost=Sum("cost"))
    count = routed.count()
    problems = []
    if (ledger["n"] or 0) != count:
        problems.append(f"the ledger counts {ledger['n']} requests for {count} routed records")
    if (ledger["cost"] or 0) != (records["cost"] or 0):
        problems.append(f"the ledger's cost {ledger['cost']} differs from the records' {records['cost']}")
    return problems


def refusal_problems(seen: Observations) -> list[str]:
    """Every 429 a client saw is on record once as a refusal, with its reason, and nothing more.

    A refusal's response carries no request id, so they are counted by reason. The only
    refusals a client may not have seen are those whose worker was killed after making the
    record durable and before answering: no more than the requests cut off in flight.
    """
    seen_429 = Counter(f"429 {o.detail.split(':', 1)[0]}" for o in seen.rejected_detail if o.status == 429)
    errors = RequestRecord.objects.filter(status=RecordStatus.REFUSED).values_list("error", flat=True)
    recorded = Counter(error.split(":", 1)[0] for error in errors)
    problems = []
    missing = seen_429 - recorded
    if missing:
        problems.append(
            f"429s seen and not recorded as refusals, by reason: {dict(missing)} (recorded {dict(recorded)})"
        )
    cut_off = sum(o.detail.startswith("in flight") for o in seen.connection_failures)
    extra = recorded - seen_429
    if extra.total() > cut_off:
        problems.append(f"refusals on record that no client saw: {dict(extra)}, with {cut_off} requests cut off")
    return problems


def budget_problems(seen: Observations) -> list[str]:
    limit = Budget.objects.get(scope_value=CAPPED_USER).limit
    spent = LedgerEntry.objects.filter(end_user=CAPPED_USER).aggregate(s=Sum("cost"))["s"] or Decimal(0)
    problems = []
    if spent > limit:
        problems.append(f"the capped user's hard budget was overspent: {spent} of {limit}")
    budget_429 = [o for o in seen.rejected_detail if o.status == 429 and "budget" in o.detail]
    if not budget_429:
        problems.append(f"the capped user's budget ({limit}) was never reached, so its limit was not tested")
    others = [o for o in seen.rejected_detail if o not in budget_429]
    if others:
        problems.append(f"{len(others)} unexpected 4xx, e.g. {others[:2]}")
    return problems


def breaker_problems(watch: BreakerWatch) -> list[str]:
    if watch.opened_and_closed():
        return []
    why = f"; reading them failed: {dict(watch.errors)}" if watch.errors else ""
    return [f"no breaker was seen open and then closed; changes seen: {watch.changes[:10]}{why}"]


def connection_problems(seen: Observations, cluster: Cluster) -> list[str]:
    stray = seen.failures_outside(cluster.kills, before_s=IN_FLIGHT_GRACE_S, after_s=AFTER_RESTART_GRACE_S)
    return [f"{len(stray)} connection failures away from the kill, e.g. {stray[:3]}"] if stray else []


def summary(seen: Observations, watch: BreakerWatch, cluster: Cluster, drain_s: float) -> dict[str, object]:
    kill = cluster.kills[0] if cluster.kills else None
    failed_ids = [o.request_id for o in seen.server_errors if o.request_id]
    return {
        "seconds": CHAOS_SECONDS,
        "statuses": dict(sorted(seen.statuses.items())),
        "answered": len(seen.answered),
        "server_errors": Counter(o.status for o in seen.server_errors),
        # No HTTP response: in flight on the killed worker, or refused while it restarted.
        "connection_failures": len(seen.connection_failures),
        "connection_failures_away_from_kill": len(
            seen.failures_outside(cluster.kills, before_s=IN_FLIGHT_GRACE_S, after_s=AFTER_RESTART_GRACE_S)
        ),
        "worker_down_s": round(kill.back - kill.killed, 2) if kill else None,
        "records": RequestRecord.objects.count(),
        "refused_records": RequestRecord.objects.filter(status=RecordStatus.REFUSED).count(),
        "capped_budget": {
            "limit": str(Budget.objects.get(scope_value=CAPPED_USER).limit),
            "ledger_spend": str(LedgerEntry.objects.filter(end_user=CAPPED_USER).aggregate(s=Sum("cost"))["s"]),
            "rejected_429": seen.rejected[429],
        },
        # Requests a worker recorded and then died before answering.
        "records_not_seen_by_clients": RequestRecord.objects.exclude(id__in=[*seen.answered, *failed_ids])
        .exclude(status=RecordStatus.REFUSED)
        .count(),
        "breaker_changes": [(round(t - watch.changes[0][0], 2), e, s) for t, e, s in watch.changes][:20],
        "breaker_read_errors": dict(watch.errors),
        "upstream": cluster.upstream_stats() if "upstream" in cluster.processes else None,
        "drain_s": round(drain_s, 2),
    }


def test_gateway_loses_nothing_while_the_upstream_fails_and_processes_are_killed(budget_keys_cleared):
    needs_postgres_and_redis()
    # LOG_LEVEL=ERROR: the 429s and the readiness probes' 401s would fill the output.
    env = subprocess_env(CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS=str(CLAIM_TIMEOUT_S), LOG_LEVEL="ERROR")
    cluster = Cluster(env=env)
    out = Path(settings.CASCADEOPS_RECORD_SPOOL_DIR).parent / "chaos-outcomes.json"
    started = time.monotonic()
    try:
        cluster.start_upstream(Fault())
        key = chaos_policy(cluster.upstream_url)
        cluster.start_gateways()
        cluster.start_flusher()
        setup_s = time.monotonic() - started
        watch = run_chaos(cluster, key, out)
        seen = Observations.sort(read_outcomes(out))
        drain_s = wait_until_drained(list(seen.answered))
        report = {"setup_s": round(setup_s, 1), **summary(seen, watch, cluster, drain_s)}
    finally:
        cluster.stop_all()
    print("chaos:", json.dumps(report, default=str, indent=1))

    assert len(cluster.kills) == 1 and len(cluster.flusher_kills) == 1
    assert seen.answered, f"no request was answered: {report}"
    problems = [f"{len(seen.answered_without_id)} answers without x-request-id"] if seen.answered_without_id else []
    problems += record_problems(seen)
    problems += ledger_problems()
    problems += refusal_problems(seen)
    problems += connection_problems(seen, cluster)
    problems += budget_problems(seen)
    problems += breaker_problems(watch)
    assert not problems, "\n".join(problems)
