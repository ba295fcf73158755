"""Alert rules' metric values, read from rollups."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from dashboard.alerts import rules as alerts
from dashboard.choices import Metric, Resolution
from dashboard.models import AlertRule
from dashboard.rollups.compute import bucket_start, minute_start, points_from_rows, totals_of
from dashboard.rollups.selectors import budget_daily_get, rollup_rows, today_start


def alert_metric_value(*, rule: AlertRule, now: datetime) -> float | None:
    """The rule's metric now, read from rollups; None without data (or without a budget)."""
    if rule.metric == Metric.DAILY_BUDGET_PCT:
        return _budget_pct(rule.policy_id, now)
    if rule.metric == Metric.COST_ANOMALY:
        return _cost_anomaly(rule, now)
    since = minute_start(now) - timedelta(minutes=rule.window_minutes - 1)
    rows = rollup_rows(resolution=Resolution.MINUTE, since=since, policy_id=rule.policy_id)
    return alerts.window_metric(rule.metric, totals_of(points_from_rows(rows)), rule.window_minutes, rule.reason)


def _budget_pct(policy_id: int | None, now: datetime) -> float | None:
    budget = budget_daily_get(policy_id=policy_id)
    if budget is None:
        return None
    rows = rollup_rows(resolution=Resolution.HOUR, since=today_start(now), policy_id=policy_id)
    spent = rows.aggregate(cost=Sum("cost"))["cost"] or Decimal(0)
    return alerts.budget_pct(spent, budget)


def _cost_anomaly(rule: AlertRule, now: datetime) -> float | None:
    """The last complete window's cost against the `trailing_windows` complete windows before it."""
    hourly = rule.window_minutes % 60 == 0
    resolution = Resolution.HOUR if hourly else Resolution.MINUTE
    window = timedelta(minutes=rule.window_minutes)
    # Complete buckets only: a partial bucket would always look cheap.
    end = bucket_start(now, resolution)
    since = end - window * (rule.trailing_windows + 1)
    rows = rollup_rows(resolution=resolution, since=since, until=end, policy_id=rule.policy_id)
    costs = [Decimal(0)] * (rule.trailing_windows + 1)
    for bucket, cost in rows.order_by().values_list("bucket").annotate(cost=Sum("cost")):
        costs[int((end - bucket - timedelta(microseconds=1)) / window)] += cost
    current, trailing = costs[0], costs[1:]
    return alerts.anomaly_score(current, trailing)
