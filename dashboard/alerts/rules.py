"""Alert rules in plain Python: metric values, comparisons, notification bodies, backoff.

`services.alert_rules_evaluate` reads rollups through selectors and calls these; nothing
here touches the database or the network.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from common import numbers
from dashboard.choices import Comparator, Metric, NoticeKind
from dashboard.rollups.compute import Totals

COMPARE: dict[str, Callable[[float, float], bool]] = {
    Comparator.GT: operator.gt,
    Comparator.GTE: operator.ge,
    Comparator.LT: operator.lt,
    Comparator.LTE: operator.le,
}
# Retries of a failed delivery wait 30 s, 1 min, 2 min, 4 min, 8 min: a receiver that is
# down for a deploy gets a quarter of an hour to come back.
DELIVERY_MAX_RETRIES = 5
BACKOFF_BASE_S = 30
BACKOFF_CAP_S = 15 * 60
COLOURS = {NoticeKind.FIRING: "#d92d20", NoticeKind.REMINDER: "#dc6803", NoticeKind.RESOLVED: "#079455"}


def breaches(value: float | None, comparator: str, threshold: float) -> bool:
    """Whether the rule's condition holds; no data never breaches."""
    return value is not None and COMPARE[comparator](value, threshold)


def window_metric(metric: str, totals: Totals, window_minutes: int, reason: str = "") -> float | None:
    """The value of a metric measured over one window of rollups; None without data.

    `reason` narrows the refusal metrics to refusals whose reason contains it.
    """
    if metric == Metric.HOURLY_COST:
        return float(totals.cost) * 60 / window_minutes
    if metric == Metric.MEAN_QUALITY:
        return totals.mean_quality
    if metric == Metric.ESCALATION_RATE:
        return totals.escalation_rate
    if metric == Metric.CHEAP_TIER_ACCEPTANCE:
        return totals.cheap_acceptance
    if metric == Metric.P95_LATENCY:
        return totals.quantile(0.95)
    if metric == Metric.ERROR_RATE:
        return totals.error_rate
    if metric == Metric.REFUSAL_RATE:
        return totals.refusal_rate(reason)
    if metric == Metric.REFUSALS:
        return float(totals.refusals_of(reason)) if totals.received else None
    raise ValueError(f"{metric} is not measured over one window")


def budget_pct(spent: Decimal, budget: Decimal | None) -> float | None:
    """Today's spend as a percentage of the daily budget; None without a budget."""
    if not budget:
        return None
    return float(spent / budget * 100)


def anomaly_score(current: Decimal, trailing: Sequence[Decimal]) -> float | None:
    """How many standard deviations `current` is from the trailing windows' mean, unsigned.

    None when the trailing windows do not vary (too little history to call anything odd).
    """
    if len(trailing) < 2:
        return None
    values = [float(v) for v in trailing]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std == 0:
        return None
    return abs(float(current) - mean) / std


def backoff_seconds(retries: int) -> int:
    """How long to wait before the retry after `retries` failed retries."""
    return int(min(BACKOFF_BASE_S * 2**retries, BACKOFF_CAP_S))


def format_value(metric: str, value: float | None) -> str:
    """A metric's value with its unit, written as everywhere else (`common.numbers`)."""
    if value is None:
        return "no data"
    if metric == Metric.HOURLY_COST:
        return f"{numbers.usd(value)}/h"
    if metric == Metric.MEAN_QUALITY:
        return f"{value:.3f} (0–1)"
    if metric == Metric.P95_LATENCY:
        return numbers.duration_ms(value)
    if metric == Metric.COST_ANOMALY:
        return f"{value:.1f}σ"
    if metric == Metric.REFUSALS:
        return f"{value:,.0f} refused"
    if metric == Metric.BUDGET:
        return f"{numbers.percent(value)} of its limit"
    if metric == Metric.DAILY_BUDGET_PCT:
        return f"{numbers.percent(value)} of budget"
    return numbers.percent(value)


@dataclass(frozen=True)
class Notice:
    """What a notification says about an event, independent of the channel."""

    kind: str
    rule: str
    metric: str
    comparator: str
    threshold: float
    value: float | None
    scope: str
    started_at: datetime
    resolved_at: datetime | None = None

    @property
    def headline(self) -> str:
        state: dict[str, str] = {
            NoticeKind.FIRING: "FIRING",
            NoticeKind.REMINDER: "STILL FIRING",
            NoticeKind.RESOLVED: "RESOLVED",
        }
        return f"[{state[self.kind]}] {self.rule} ({self.scope})"

    @property
    def condition(self) -> str:
        if self.metric == Metric.BUDGET:
            used, threshold = format_value(self.metric, self.value), format_value(self.metric, self.threshold)
            return f"Spent and held: {used} (alerts at {threshold})"
        label = Metric(self.metric).label
        symbol = Comparator(self.comparator).label
        threshold = format_value(self.metric, self.threshold)
        return f"{label}: {format_value(self.metric, self.value)} (rule: {symbol} {threshold})"


def slack_body(notice: Notice) -> dict[str, object]:
    """A JSON body Slack incoming webhooks (and Mattermost, Rocket.Chat, …) accept."""
    fields = [
        {"title": "Scope", "value": notice.scope, "short": True},
        {"title": "Since", "value": f"{notice.started_at:%Y-%m-%d %H:%M %Z}", "short": True},
    ]
    if notice.resolved_at is not None:
        fields.append({"title": "Resolved", "value": f"{notice.resolved_at:%Y-%m-%d %H:%M %Z}", "short": True})
    return {
        "text": f"{notice.headline}: {notice.condition}",
        "attachments": [
            {
                "color": COLOURS[NoticeKind(notice.kind)],
                "title": notice.rule,
                "text": notice.condition,
                "fields": fields,
                "footer": "CascadeOps",
                "ts": int(notice.started_at.timestamp()),
            }
        ],
    }


def email_subject(notice: Notice) -> str:
    return f"CascadeOps {notice.headline}"


def email_body(notice: Notice) -> str:
    lines = [notice.headline, "", notice.condition, f"Since: {notice.started_at:%Y-%m-%d %H:%M %Z}"]
    if notice.resolved_at is not None:
        lines.append(f"Resolved: {notice.resolved_at:%Y-%m-%d %H:%M %Z}")
    return "\n".join(lines) + "\n"
