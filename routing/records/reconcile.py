"""Recompute the spend ledger from the request records and compare it with the stored ledger.

The flusher writes ledger rows in the same transaction as the records, and a quality
check (a shadow evaluation, a semantic cache re-ask) in the transaction that stores it, so
the two must agree to the last 1e-10 dollar; `manage.py ledger_reconcile` runs this and
reports any difference (there should be none), and every record the flusher could not
store (`RecordDeadLetter`): its spend is in neither, so agreeing totals would hide it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import chain
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Prefetch, Q

from billing.ledger.services import SUMMED, LedgerLine
from billing.models import LedgerEntry
from routing.models import RecordDeadLetter, RequestAttempt, RequestRecord, SemanticCacheCheck, ShadowEvaluation
from routing.records.ledger import CheckCall, LedgerSource, check_lines, evaluation_spend, ledger_lines

Totals = dict[tuple[object, ...], dict[str, Decimal]]
CHUNK = 2_000


@dataclass(frozen=True)
class Difference:
    dimensions: tuple[object, ...]
    field: str
    ledger: Decimal
    records: Decimal


def ledger_reconcile(*, start: date, end: date) -> list[Difference]:
    """Every (dimensions, field) where the ledger and the records disagree, for days in [start, end)."""
    expected = _totals(chain(_lines_from_records(start, end), _lines_from_checks(start, end)))
    stored = _stored_totals(start, end)
    differences = []
    for dims in sorted(expected.keys() | stored.keys(), key=str):
        want, have = expected.get(dims, {}), stored.get(dims, {})
        for field in SUMMED:
            if want.get(field, Decimal(0)) != have.get(field, Decimal(0)):
                differences.append(Difference(dims, field, have.get(field, Decimal(0)), want.get(field, Decimal(0))))
    return differences


def dead_letters(*, start: date, end: date) -> list[RecordDeadLetter]:
    """Records created in [start, end) the flusher set aside (by when they were set aside, if undated)."""
    since, until = _day_bounds(start, end)
    in_window = Q(record_created__gte=since, record_created__lt=until)
    undated = Q(record_created__isnull=True, dead_lettered__gte=since, dead_lettered__lt=until)
    return list(RecordDeadLetter.objects.filter(in_window | undated).order_by("dead_lettered"))


def _day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(settings.BILLING_TIME_ZONE)
    return datetime.combine(start, time.min, tz), datetime.combine(end, time.min, tz)


def _lines_from_records(start: date, end: date) -> Iterator[LedgerLine]:
    since, until = _day_bounds(start, end)
    records = (
        RequestRecord.objects.filter(created__gte=since, created__lt=until)
        .prefetch_related(Prefetch("attempts", queryset=RequestAttempt.objects.order_by("position")))
        .order_by("created")
    )
    for record in records.iterator(chunk_size=CHUNK):
        yield from ledger_lines([_payload(record)])


def _lines_from_checks(start: date, end: date) -> Iterator[LedgerLine]:
    """The quality checks' lines: shadow evaluations that paid for calls, semantic re-asks."""
    since, until = _day_bounds(start, end)
    evaluations = (
        ShadowEvaluation.objects.filter(finished__gte=since, finished__lt=until)
        .exclude(reference_model="")
        .select_related("record")
    )
    for evaluation in evaluations.iterator(chunk_size=CHUNK):
        assert evaluation.finished is not None  # the `finished__gte` filter excludes NULL
        yield from check_lines(evaluation.record, [evaluation_spend(evaluation)], evaluation.finished)
    checks = SemanticCacheCheck.objects.filter(created__gte=since, created__lt=until).select_related("record")
    for check in checks.iterator(chunk_size=CHUNK):
        yield from check_lines(check.record, [CheckCall.from_dict(c) for c in check.fresh_calls], check.created)


def _payload(record: RequestRecord) -> LedgerSource:
    """The parts of the flusher's payload the ledger reads, rebuilt from the stored rows."""
    return {
        "created": record.created.isoformat(),
        "status": record.status,
        "team": record.team,
        "app": record.app,
        "api_key_prefix": record.api_key_prefix,
        "policy_name": record.policy_name,
        "end_user": record.end_user,
        "escalated": record.escalated,
        "final_model": record.final_model,
        "baseline_cost": str(record.baseline_cost),
        "cache": record.cache,
        "cost_avoided": str(record.cost_avoided),
        "metadata": record.metadata,
        "attempts": [
            {
                "model": a.model,
                "outcome": a.outcome,
                "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens,
                "cached_input_tokens": a.cached_input_tokens,
                "cost": str(a.cost),
            }
            for a in record.attempts.all()
        ],
    }


def _totals(lines: Iterator[LedgerLine]) -> Totals:
    totals: Totals = defaultdict(lambda: defaultdict(Decimal))
    for line in lines:
        row = totals[line.dimensions]
        for field in SUMMED:
            row[field] += Decimal(getattr(line, field))
    return totals


def _stored_totals(start: date, end: date) -> Totals:
    totals: Totals = defaultdict(lambda: defaultdict(Decimal))
    rows = LedgerEntry.objects.filter(day__gte=start, day__lt=end).values(
        "day", "team", "app", "api_key_prefix", "policy", "model", "end_user", *SUMMED
    )
    for row in rows.iterator(chunk_size=CHUNK):
        dims = (
            row["day"],
            row["team"],
            row["app"],
            row["api_key_prefix"],
            row["policy"],
            row["model"],
            row["end_user"],
        )
        for field in SUMMED:
            totals[dims][field] += Decimal(row[field])
    return totals


def default_window(today: date) -> tuple[date, date]:
    """This month and the one before: what a routine check looks at."""
    first = today.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1), today + timedelta(days=1)
