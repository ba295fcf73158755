"""Reads for the request log: one page of records newest first, and one request whole.

Pages are keyset-paginated on (created, id): the next page starts after the last row shown,
so page 1,000 costs what page 1 does and nothing counts the whole table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from routing.models import PolicyTier, RequestAttempt, RequestRecord, RequestText

# What a row of the list shows; the wide columns (metadata, error) stay in the database.
LIST_COLUMNS = (
    "id",
    "created",
    "policy_name",
    "policy_version",
    "team",
    "app",
    "end_user",
    "status",
    "error",  # a refusal's reason, a failure's cause: short
    "final_tier",
    "final_model",
    "escalated",
    "cache",
    "cost",
    "latency_ms",
    "score",
)


class CursorInvalid(ValueError):
    """A `after` value that is not one this page wrote."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last row's time and id."""

    created: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.created.isoformat()}~{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        created, _, record_id = value.partition("~")
        try:
            parsed = datetime.fromisoformat(created)
            if parsed.tzinfo is None:
                raise CursorInvalid(value)
            return cls(parsed, uuid.UUID(record_id))
        except ValueError as exc:
            raise CursorInvalid(value) from exc


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[RequestRecord]
    next: Cursor | None  # None on the last page


def request_log_query(records: QuerySet[RequestRecord], *, after: Cursor | None, size: int) -> QuerySet[RequestRecord]:
    """The page's one query: `size` + 1 rows newest first after `after` (the extra row tells if there is more)."""
    page = records.order_by("-created", "-id").only(*LIST_COLUMNS)
    if after is not None:
        page = page.filter(Q(created__lt=after.created) | Q(created=after.created, id__lt=after.id))
    return page[: size + 1]


def request_log_page(records: QuerySet[RequestRecord], *, after: Cursor | None, size: int) -> LogPage:
    """Up to `size` records newest first, after `after`, in one query."""
    rows = list(request_log_query(records, after=after, size=size))
    more = len(rows) > size
    rows = rows[:size]
    return LogPage(rows, Cursor(rows[-1].created, rows[-1].id) if more else None)


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One tier's attempt as the detail page shows it, with why the cascade went on."""

    attempt: RequestAttempt
    answer: str | None  # None when the policy kept no text
    why: str


@dataclass(frozen=True, slots=True)
class RequestDetail:
    record: RequestRecord
    attempts: list[AttemptView]
    prompt: str | None  # None when the policy kept no text (or it was purged)


def request_detail_get(record_id: uuid.UUID) -> RequestDetail:
    """One request, its attempts and its kept text; three queries, four with thresholds to explain."""
    record = RequestRecord.objects.get(id=record_id)
    attempts = list(RequestAttempt.objects.filter(record=record).order_by("position"))
    text = RequestText.objects.filter(record=record).first()
    answers = {a["position"]: a["text"] for a in text.answers} if text else {}
    thresholds = _thresholds(record, attempts)
    views = [
        AttemptView(a, answers.get(a.position) if text else None, _why(a, thresholds.get(a.tier))) for a in attempts
    ]
    return RequestDetail(record, views, text.prompt if text else None)


def _thresholds(record: RequestRecord, attempts: list[RequestAttempt]) -> dict[int, float]:
    """The tiers' thresholds, when the policy is still at the version that routed the request."""
    if record.policy_id is None or not any(a.outcome == "escalated" for a in attempts):
        return {}
    tiers = PolicyTier.objects.filter(policy_id=record.policy_id, policy__version=record.policy_version)
    return dict(tiers.values_list("position", "threshold"))


def _why(attempt: RequestAttempt, threshold: float | None) -> str:
    if attempt.outcome == "escalated":
        score = "no score" if attempt.score is None else f"scored {attempt.score:.2f}"
        bar = f"below the tier's threshold {threshold:.2f}" if threshold is not None else "below the tier's threshold"
        return f"{score}, {bar}: the next tier was asked"
    if attempt.outcome == "failed":
        kind = f"{attempt.error_kind}: " if attempt.error_kind else ""
        return f"failed ({kind}{attempt.error or 'no answer'}): the next tier was asked"
    if attempt.outcome == "accepted":
        return "answer returned to the caller"
    if attempt.outcome == "sample":
        return "an extra answer drawn by the quality gate, to measure agreement"
    return "the quality gate's judge graded the answer"
