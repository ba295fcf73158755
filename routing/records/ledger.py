"""Request-record payloads → billing's ledger lines.

Each attempt's cost goes on the line of the model that was called; the request itself,
its baseline cost and any cache savings go on the line of the model that answered (for a
request every tier failed, the last one tried).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from billing.ledger.services import LedgerLine

Payload = dict[str, Any]


def billing_day(created: str) -> date:
    """The day a request counts on, in the billing time zone."""
    return datetime.fromisoformat(created).astimezone(ZoneInfo(settings.BILLING_TIME_ZONE)).date()


def ledger_lines(payloads: list[Payload]) -> list[LedgerLine]:
    return [line for p in payloads for line in _lines(p)]


def _lines(p: Payload) -> list[LedgerLine]:
    day = billing_day(p["created"])
    attempts = p["attempts"]
    lines = [_attempt_line(p, day, a) for a in attempts]
    if not lines:  # answered without calling a model (a cache hit)
        lines = [_line(p, day, p.get("final_model") or "cache")]
    owner = lines[_answering_index(p, attempts)]
    owner.requests = 1
    owner.escalated_requests = int(bool(p["escalated"]))
    owner.baseline_cost = Decimal(p.get("baseline_cost", "0"))
    owner.cache_hits = int(bool(p.get("cache")))
    owner.cost_avoided = Decimal(p.get("cost_avoided", "0"))
    return lines


def _answering_index(p: Payload, attempts: list[Payload]) -> int:
    for i, a in enumerate(attempts):
        if a["outcome"] == "accepted":
            return i
    return max(len(attempts) - 1, 0)


def _attempt_line(p: Payload, day: date, a: Payload) -> LedgerLine:
    line = _line(p, day, a["model"])
    line.attempts = 1
    line.input_tokens = a["input_tokens"]
    line.output_tokens = a["output_tokens"]
    line.cached_input_tokens = a.get("cached_input_tokens", 0)
    line.cost = Decimal(a["cost"])
    return line


def _line(p: Payload, day: date, model: str) -> LedgerLine:
    return LedgerLine(
        day=day,
        team=p["team"],
        app=p["app"],
        api_key_prefix=p.get("api_key_prefix", ""),
        policy=p["policy_name"],
        model=model,
        end_user=p["end_user"],
        tags=dict(p.get("metadata") or {}),
    )
