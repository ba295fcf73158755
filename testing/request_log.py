"""Many request records at once, in PostgreSQL: for the request log's EXPLAIN test and its benchmark.

One template row is made through the ORM; `INSERT … SELECT … FROM generate_series` then copies
it `count` times in one statement, varying the columns the log filters on. Every other column
is copied from the template, so a column added to the table later needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from routing.models import ApiKey, Policy, RequestRecord
from testing.factories import RequestRecordFactory, make_key, make_policy, replay_endpoints

TEAMS = 200
APPS = 500
END_USERS = 5_000
KEYS = 10
TAGS = 10
FAILED_EVERY = 50  # one request in 50 failed
ESCALATED_EVERY = 7
CACHED_EVERY = 11


@dataclass(frozen=True, slots=True)
class GeneratedLog:
    """What was generated, so a caller can pick filters that match some of it."""

    policy: Policy
    keys: list[ApiKey]
    models: tuple[str, str]
    newest: datetime
    oldest: datetime


# SQL for each varied column; `i` is the row number, from 1.
def _varied(
    policy_id: int, key_ids: list[int], models: tuple[str, str], newest: datetime, span_s: float
) -> dict[str, str]:
    keys = ",".join(str(k) for k in key_ids)
    cheap, strong = (m.replace("'", "''") for m in models)
    return {
        "id": "md5(random()::text || i::text)::uuid",
        "created": f"%(newest)s::timestamptz - (i * {span_s:.6f}) * interval '1 second'",
        "team": f"'team-' || mod(i, {TEAMS})",
        "app": f"'app-' || mod(i, {APPS})",
        "end_user": f"'user-' || mod(i, {END_USERS})",
        "api_key_id": f"(ARRAY[{keys}])[1 + mod(i, {len(key_ids)})]",
        "policy_id": str(policy_id),
        "status": f"CASE WHEN mod(i, {FAILED_EVERY}) = 0 THEN 'failed' ELSE 'answered' END",
        "escalated": f"mod(i, {ESCALATED_EVERY}) = 0",
        "final_model": f"CASE WHEN mod(i, {ESCALATED_EVERY}) = 0 THEN '{strong}' ELSE '{cheap}' END",
        "final_tier": f"CASE WHEN mod(i, {ESCALATED_EVERY}) = 0 THEN 1 ELSE 0 END",
        "cache": f"CASE WHEN mod(i, {CACHED_EVERY}) = 0 THEN 'exact' ELSE '' END",
        "cost": "mod(i, 1000) * 0.000001",
        "latency_ms": "50 + mod(i, 3000)",
        "metadata": f"jsonb_build_object('feature', 'f' || mod(i, {TAGS}))",
    }


def request_log_generate(count: int, *, span: timedelta = timedelta(days=30)) -> GeneratedLog:
    """`count` records spread over `span` up to now, in one INSERT (PostgreSQL only)."""
    assert connection.vendor == "postgresql", "generate_series: PostgreSQL only"
    cheap, strong = replay_endpoints()
    policy = make_policy(f"log-bench-{timezone.now():%H%M%S%f}", [(cheap, 0.9), (strong, 1.0)])
    keys = [make_key(policy, team=f"team-{i}", app=f"app-{i}")[0] for i in range(KEYS)]
    template = RequestRecordFactory.create(policy=policy, policy_name=policy.name, api_key=keys[0])
    newest = timezone.now()
    varied = _varied(policy.id, [k.id for k in keys], (cheap.name, strong.name), newest, span.total_seconds() / count)
    _copy(template, varied, count, newest)
    template.delete()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RequestRecord._meta.db_table}")
    return GeneratedLog(policy, keys, (cheap.name, strong.name), newest, newest - span)


def _copy(template: RequestRecord, varied: dict[str, str], count: int, newest: datetime) -> None:
    table = RequestRecord._meta.db_table
    columns = [f.column for f in RequestRecord._meta.concrete_fields]
    values = [varied.get(str(c), f't."{c}"') for c in columns]
    names = ", ".join(f'"{c}"' for c in columns)
    sql = (
        f"INSERT INTO {table} ({names}) "
        f"SELECT {', '.join(values)} FROM {table} t CROSS JOIN generate_series(1, %(count)s) AS i "
        "WHERE t.id = %(template)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"count": count, "template": template.id, "newest": newest})
