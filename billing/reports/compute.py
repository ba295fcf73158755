"""Monthly finance reports, computed from ledger rows (pure functions, no ORM).

`report_data()` turns one calendar month of ledger rows (and the month before, for the
change) into the JSON-ready dict that `MonthlyReport.data` stores and the finance pages, the
CSV and the PDF show: totals and breakdowns, daily series, projections, a forecast and the
break-even. Money leaves as strings, rates as floats; `upgrade()` reads older schemas. The
keys are listed in docs/billing.md.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Any

from common import numbers
from common.charts import chart_text

SCHEMA = 3  # 2: quality_checks and quality_cost; 3: by_end_user and by_tag
CURRENCY = "USD"
MONEY_PLACES = Decimal("0.000001")
UNIT_COST_PLACES = Decimal("0.00000001")
RATE_DIGITS = 6
DAYS_PER_YEAR = 365
DAYS_PER_MONTH = Decimal(DAYS_PER_YEAR) / 12
# Two-sided 95% under normal residuals; a trend needs more days than parameters (two).
Z_95 = Decimal("1.96")
MIN_TREND_DAYS = 3
# Today counts in the rates as at least this much of a day: the first minutes' spend,
# stretched over a whole day, would say little.
MIN_PARTIAL_DAY = Decimal(1) / 24

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """The ledger summed over one day, team, app, policy and model (or one day and end user, or tag)."""

    day: date
    team: str
    app: str
    policy: str
    model: str
    requests: int = 0
    escalated_requests: int = 0
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_hits: int = 0
    quality_checks: int = 0
    cost: Decimal = Decimal(0)
    baseline_cost: Decimal = Decimal(0)
    cost_avoided: Decimal = Decimal(0)
    quality_cost: Decimal = Decimal(0)
    # Set on the rows of the end-user and tag breakdowns, which are summed apart.
    end_user: str = ""
    tag: str = ""


DIMENSIONS = ("day", "team", "app", "policy", "model")
ATTRIBUTIONS = ("end_user", "tag")
SUMMED = tuple(f.name for f in fields(LedgerRow) if f.name not in DIMENSIONS + ATTRIBUTIONS)
AMOUNTS = ("cost", "baseline_cost", "cost_avoided", "quality_cost")
BREAKDOWNS = (("team", "by_team"), ("app", "by_app"), ("policy", "by_policy"), ("model", "by_model"))
# Summed from their own ledger rows: a request's end user, and each of its tags (a request
# with two tags counts under both, so tags do not add up to the total).
ATTRIBUTED = (("end_user", "by_end_user"), ("tag", "by_tag"))
NO_END_USER = "(none)"
# The page and the PDF list the biggest spenders; the CSV has every one.
TOP_ATTRIBUTED = 25
Rows = Sequence[LedgerRow]


@dataclass(slots=True)
class Spend:
    """Sums of ledger rows, and the figures derived from them."""

    requests: int = 0
    escalated_requests: int = 0
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_hits: int = 0
    quality_checks: int = 0
    cost: Decimal = Decimal(0)
    baseline_cost: Decimal = Decimal(0)
    cost_avoided: Decimal = Decimal(0)
    quality_cost: Decimal = Decimal(0)

    def add(self, row: LedgerRow) -> None:
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(row, name))

    @property
    def savings(self) -> Decimal:
        return self.baseline_cost - self.cost

    def as_json(self) -> Json:
        per_request = self.cost / self.requests if self.requests else None
        return {
            "requests": self.requests,
            "escalated_requests": self.escalated_requests,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_hits": self.cache_hits,
            "quality_checks": self.quality_checks,
            "cost": money(self.cost),
            "baseline_cost": money(self.baseline_cost),
            "savings": money(self.savings),
            "savings_rate": rate(self.savings, self.baseline_cost),
            "cost_avoided": money(self.cost_avoided),
            "quality_cost": money(self.quality_cost),
            "escalation_rate": rate(self.escalated_requests, self.requests),
            "cost_per_request": None if per_request is None else money(per_request, UNIT_COST_PLACES),
        }


@dataclass(frozen=True, slots=True)
class Forecast:
    """Next month's spend: a point and, when there are enough days, a 95% range."""

    cost: Decimal
    low: Decimal | None
    high: Decimal | None
    method: str


def money(amount: Decimal, places: Decimal = MONEY_PLACES) -> str:
    rounded = amount.quantize(places, rounding=ROUND_HALF_UP)
    return str(rounded.copy_abs() if rounded.is_zero() else rounded)  # never "-0.000000"


def rate(part: Decimal | int, whole: Decimal | int) -> float | None:
    return round(float(Decimal(part) / Decimal(whole)), RATE_DIGITS) if whole else None


def percent(value: float | None, *, signed: bool = False) -> str:
    """A rate for people: 0.714286 → "71.4 %" ("+71.4 %" when `signed`); "–" when undefined."""
    return numbers.share(value, signed=signed)


def dollars(amount: str | Decimal | None, *, signed: bool = False) -> str:
    """Money for people: "84.000000" → "$84.00", "0.000375" → "$0.000375"; "–" when undefined."""
    return numbers.usd(amount, signed=signed)


# --- months -------------------------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_after(month: date) -> date:
    return (month_start(month) + timedelta(days=32)).replace(day=1)


def month_before(month: date) -> date:
    return (month_start(month) - timedelta(days=1)).replace(day=1)


def days_in_month(month: date) -> int:
    return calendar.monthrange(month.year, month.month)[1]


def month_key(month: date) -> str:
    return f"{month:%Y-%m}"


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# --- the report ----------------------------------------------------------------------------


def report_data(
    *,
    month: date,
    rows: Iterable[LedgerRow],
    previous_rows: Iterable[LedgerRow],
    as_of: date | None = None,
    day_fraction: float | None = None,
    implementation_cost: Decimal | None = None,
    end_user_rows: tuple[Rows, Rows] = ((), ()),
    tag_rows: tuple[Rows, Rows] = ((), ()),
) -> Json:
    """Build one month's report from its ledger rows and the previous month's.

    `as_of` makes it a month to date: days after it are not counted. With `day_fraction`
    (how much of `as_of` has passed, 0–1) today's spend so far counts in the rates as that
    much of a day (at least an hour's worth); without it, today is left out of the rates
    while earlier days exist, because it is not over. The forecast fits complete days only.
    Without `as_of` the month is over and every day of it counts. `projection_basis` says
    which days the rates came from. `end_user_rows` and `tag_rows` (this month's and the
    previous month's) feed the end-user and tag breakdowns.
    """
    month = month_start(month)
    end = min(as_of, _last_day(month)) if as_of else _last_day(month)
    rows = [r for r in rows if month <= r.day <= end]
    previous = month_before(month)
    previous_rows = [r for r in previous_rows if as_of is None or r.day.day <= end.day]
    attributed = {
        key: ([r for r in now if month <= r.day <= end], [r for r in before if as_of is None or r.day.day <= end.day])
        for key, (now, before) in (("by_end_user", end_user_rows), ("by_tag", tag_rows))
    }
    elapsed = _days(month, end)
    rate_days = elapsed if as_of is None or len(elapsed) == 1 else elapsed[:-1]
    by_day = _group(rows, lambda r: r.day.isoformat())
    total, previous_total = _total(rows), _total(previous_rows)
    next_month = month_after(month)
    if as_of is not None and day_fraction is not None:
        today_part = max(Decimal(str(day_fraction)), MIN_PARTIAL_DAY)
        complete = elapsed[:-1]
        daily_rate = _daily_rate(by_day, elapsed, days=len(complete) + today_part)
        basis = partial_day_basis(len(complete), today_part)
        counted_days: float | int = round(float(len(complete) + today_part), 3)
        forecast = _forecast_of(by_day, complete, daily_rate, next_month)
    else:
        daily_rate = _daily_rate(by_day, rate_days)
        basis = whole_days_basis(len(rate_days), today_included=as_of is not None and len(elapsed) == 1)
        counted_days = len(rate_days)
        forecast = _forecast_of(by_day, rate_days, daily_rate, next_month)
    data: Json = {
        "schema": SCHEMA,
        "month": month_key(month),
        "title": f"{month:%B %Y}",
        "currency": CURRENCY,
        "period": {
            "start": month.isoformat(),
            "end": end.isoformat(),
            "days": days_in_month(month),
            "elapsed_days": len(elapsed),
            "rate_days": counted_days,
            "complete": as_of is None,
        },
        "totals": total.as_json(),
        "previous": {"month": month_key(previous), "totals": previous_total.as_json()},
        "month_over_month": month_over_month(total, previous_total),
        "daily": [{"day": day.isoformat(), **by_day.get(day.isoformat(), Spend()).as_json()} for day in elapsed],
        "daily_by_team": _daily_by_team(rows, elapsed),
        "projections": projections(daily_rate),
        "projection_basis": basis,
        "forecast": _forecast_json(forecast, next_month),
        "break_even": break_even(implementation_cost, daily_rate.savings * DAYS_PER_MONTH),
    }
    for dimension, key in BREAKDOWNS:
        data[key] = breakdown(rows, previous_rows, attrgetter(dimension))
    data["by_end_user"] = breakdown(*attributed["by_end_user"], lambda r: r.end_user or NO_END_USER)
    data["by_tag"] = breakdown(*attributed["by_tag"], attrgetter("tag"))
    return data


def _last_day(month: date) -> date:
    return month.replace(day=days_in_month(month))


def _total(rows: Iterable[LedgerRow]) -> Spend:
    total = Spend()
    for row in rows:
        total.add(row)
    return total


def _group(rows: Iterable[LedgerRow], key: Callable[[LedgerRow], str]) -> dict[str, Spend]:
    groups: dict[str, Spend] = defaultdict(Spend)
    for row in rows:
        groups[key(row)].add(row)
    return dict(groups)


def breakdown(
    rows: Sequence[LedgerRow], previous_rows: Sequence[LedgerRow], key: Callable[[LedgerRow], str]
) -> list[Json]:
    """One entry per name in either month, most expensive first, with the change in cost.

    A name only the previous month has is kept (with zeros now), so a team that stopped
    spending shows up as a drop rather than vanishing.
    """
    now, before = _group(rows, key), _group(previous_rows, key)
    names = sorted(now.keys() | before.keys(), key=lambda n: (-now.get(n, Spend()).cost, n))
    entries = []
    for name in names:
        spend, previous = now.get(name, Spend()), before.get(name, Spend())
        change = spend.cost - previous.cost
        entries.append(
            {
                "name": name,
                **spend.as_json(),
                "previous_cost": money(previous.cost),
                "cost_change": money(change),
                "cost_change_rate": rate(change, previous.cost),
            }
        )
    return entries


def month_over_month(now: Spend, before: Spend) -> Json:
    """Changes against the previous month; a rate is null when the previous figure is 0."""
    return {
        "cost_change": money(now.cost - before.cost),
        "cost_change_rate": rate(now.cost - before.cost, before.cost),
        "requests_change": now.requests - before.requests,
        "requests_change_rate": rate(now.requests - before.requests, before.requests),
        "savings_change": money(now.savings - before.savings),
        "savings_change_rate": rate(now.savings - before.savings, before.savings),
    }


def _daily_by_team(rows: Sequence[LedgerRow], elapsed: Sequence[date]) -> list[Json]:
    teams = _group(rows, lambda r: r.team)
    by_team_day = _group(rows, lambda r: f"{r.team} {r.day.isoformat()}")
    return [
        {"name": team, "cost": [money(by_team_day.get(f"{team} {d.isoformat()}", Spend()).cost) for d in elapsed]}
        for team in sorted(teams, key=lambda t: (-teams[t].cost, t))
    ]


def _daily_rate(by_day: dict[str, Spend], rate_days: Sequence[date], *, days: Decimal | None = None) -> Spend:
    """The mean day: the rate days' spend over `days` (their number unless given; only money is projected)."""
    n = Decimal(len(rate_days)) if days is None else days
    spent = [by_day.get(d.isoformat(), Spend()) for d in rate_days]
    return Spend(
        cost=sum((s.cost for s in spent), Decimal(0)) / n,
        baseline_cost=sum((s.baseline_cost for s in spent), Decimal(0)) / n,
    )


def partial_day_basis(complete_days: int, today_part: Decimal) -> str:
    """How a month to date's rates were made, counting today's spend so far."""
    hours = f"{float(today_part) * 24:.1f} hours of today"
    if not complete_days:
        return f"Projected from today's spend so far ({hours}), as a daily rate."
    days = f"{complete_days} complete day{'s' if complete_days != 1 else ''}"
    return f"Projected from the mean day of {days} and {hours} (spend so far, pro rata)."


def whole_days_basis(days: int, *, today_included: bool) -> str:
    if today_included:
        return "Projected from today's spend so far, as if the day were over."
    return f"Projected from the mean day of {days} complete day{'s' if days != 1 else ''}."


def _forecast_of(by_day: dict[str, Spend], days: Sequence[date], daily_rate: Spend, next_month: date) -> Forecast:
    """The forecast from complete days; with none yet, today's rate so far times next month's days."""
    horizon = days_in_month(next_month)
    if not days:
        return Forecast(cost=daily_rate.cost * horizon, low=None, high=None, method="today's rate so far")
    series = [by_day.get(d.isoformat(), Spend()).cost for d in days]
    return forecast_total(series, gap=(next_month - days[-1]).days - 1, horizon=horizon)


def projections(daily: Spend) -> Json:
    """Cost, baseline and savings per day, month (365/12 days) and year (365 days) at this rate."""
    return {
        name: {
            "cost": money(daily.cost * days),
            "baseline_cost": money(daily.baseline_cost * days),
            "savings": money(daily.savings * days),
        }
        for name, days in (("daily", Decimal(1)), ("monthly", DAYS_PER_MONTH), ("annual", Decimal(DAYS_PER_YEAR)))
    }


def break_even(implementation_cost: Decimal | None, monthly_savings: Decimal) -> Json | None:
    """Months of savings at `monthly_savings` that pay back `implementation_cost`."""
    if implementation_cost is None:
        return None
    months = rate(implementation_cost, monthly_savings) if monthly_savings > 0 else None
    return {
        "implementation_cost": money(implementation_cost),
        "monthly_savings": money(monthly_savings),
        "months": months,
    }


def forecast_total(series: Sequence[Decimal], *, gap: int, horizon: int) -> Forecast:
    """Forecast the sum of the `horizon` days that start `gap` days after `series` ends.

    The method is an ordinary least-squares line through daily spend (day 1, 2, … of the
    series against its cost), extrapolated over the forecast days and summed, with a 95%
    prediction interval for that sum: ± 1.96 · s · √(H + H²/n + (Σ(x − x̄))² / Sxx), where
    s² is the residual variance (n − 2 degrees of freedom), H the forecast days, x their
    day numbers, and x̄ and Sxx the mean and the sum of squared deviations of the series'
    day numbers. The first term is the days' own noise, the others the uncertainty of the
    line. It assumes independent, normal day-to-day noise around a straight trend, so a
    strong weekly pattern makes the range optimistic. Negative values are clipped to 0.
    With fewer than three days there is no trend to fit: the forecast is the mean day
    times H, and there is no range.
    """
    n = len(series)
    mean = sum(series, Decimal(0)) / n if n else Decimal(0)
    if n < MIN_TREND_DAYS:
        return Forecast(cost=mean * horizon, low=None, high=None, method="daily mean")
    x_mean = Decimal(n + 1) / 2
    sxx = Decimal(n * (n * n - 1)) / 12
    slope = sum(((x - x_mean) * (y - mean) for x, y in enumerate(series, 1)), Decimal(0)) / sxx
    intercept = mean - slope * x_mean
    residual_variance = sum(((y - intercept - slope * x) ** 2 for x, y in enumerate(series, 1)), Decimal(0)) / (n - 2)
    first = n + gap + 1
    sum_x = Decimal(horizon * (2 * first + horizon - 1)) / 2
    point = horizon * intercept + slope * sum_x
    spread = sum_x - horizon * x_mean
    variance = residual_variance * (horizon + Decimal(horizon * horizon) / n + spread * spread / sxx)
    half_width = Z_95 * variance.sqrt()
    zero = Decimal(0)
    return Forecast(
        cost=max(point, zero),
        low=max(point - half_width, zero),
        high=max(point + half_width, zero),
        method="linear trend",
    )


def _forecast_json(forecast: Forecast, month: date) -> Json:
    return {
        "month": month_key(month),
        "days": days_in_month(month),
        "method": forecast.method,
        "confidence": 0.95 if forecast.low is not None else None,
        "cost": money(forecast.cost),
        "low": None if forecast.low is None else money(forecast.low),
        "high": None if forecast.high is None else money(forecast.high),
    }


# --- stored reports ------------------------------------------------------------------------

# The figures each schema added, as a month without them reads: zero.
ADDED_IN_SCHEMA_2 = {"quality_checks": 0, "quality_cost": money(Decimal(0))}


def upgrade(data: Json) -> Json:
    """A stored report read as this schema: the figures it predates are zero (a copy; `data` is left alone)."""
    schema = data.get("schema", 1)
    if schema >= SCHEMA:
        return data

    def complete(figures: Json) -> Json:
        return {**ADDED_IN_SCHEMA_2, **figures}

    upgraded = {
        **data,
        "schema": SCHEMA,
        "totals": complete(data["totals"]),
        "previous": {**data["previous"], "totals": complete(data["previous"]["totals"])},
        "daily": [complete(day) for day in data["daily"]],
    }
    for _, key in BREAKDOWNS:
        upgraded[key] = [complete(entry) for entry in data[key]]
    for _, key in ATTRIBUTED:  # schema 3: reports built before kept no such breakdown
        upgraded.setdefault(key, [])
    return upgraded


# --- outputs: CSV rows and chart figures ---------------------------------------------------

CSV_COLUMNS = [
    "month",
    "breakdown",
    "name",
    "requests",
    "escalated_requests",
    "escalation_rate",
    "attempts",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_hits",
    "quality_checks",
    "cost",
    "baseline_cost",
    "savings",
    "savings_rate",
    "cost_avoided",
    "quality_cost",
    "cost_per_request",
    "previous_cost",
    "cost_change",
    "cost_change_rate",
]


def csv_rows(data: Json) -> list[list[str]]:
    """The report as one long table: `total`, then `team`, `app`, `policy`, `model`, `end_user`, `tag`, `day` rows.

    Columns are `CSV_COLUMNS`; a figure that does not apply (a day's previous cost) or is
    undefined (the escalation rate of no requests) is empty.
    """
    mom = data["month_over_month"]
    total = {
        "name": "all",
        **data["totals"],
        "previous_cost": data["previous"]["totals"]["cost"],
        "cost_change": mom["cost_change"],
        "cost_change_rate": mom["cost_change_rate"],
    }
    entries = [("total", total)]
    entries += [(kind, entry) for kind, key in BREAKDOWNS + ATTRIBUTED for entry in data[key]]
    entries += [("day", {"name": day["day"], **day}) for day in data["daily"]]
    return [CSV_COLUMNS] + [
        [data["month"], kind, *(_cell(entry.get(c)) for c in CSV_COLUMNS[2:])] for kind, entry in entries
    ]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def figures(data: Json) -> dict[str, Json]:
    """Plotly figure dicts for the report page: spend by team per day, and actual vs baseline.

    Money stays a string in the figures too; the y axes are linear, so plotly.js reads
    the strings as numbers.
    """
    import plotly.graph_objects as go

    days = [d["day"] for d in data["daily"]]
    by_team = go.Figure(
        [go.Bar(x=days, y=team["cost"], name=chart_text(team["name"])) for team in data["daily_by_team"]],
        layout=_layout("Spend by team per day", barmode="stack"),
    )
    baseline = _running_sum(d["baseline_cost"] for d in data["daily"])
    actual = _running_sum(d["cost"] for d in data["daily"])
    cumulative = go.Figure(
        [
            go.Scatter(x=days, y=baseline, name="All-premium baseline", mode="lines"),
            go.Scatter(x=days, y=actual, name="Actual", mode="lines", fill="tonexty"),
        ],
        layout=_layout("Cumulative spend: actual vs baseline (the gap is the savings)"),
    )
    return {"spend_by_team": by_team.to_plotly_json(), "actual_vs_baseline": cumulative.to_plotly_json()}


def _layout(title: str, **extra: Any) -> Json:
    grid = {"gridcolor": "#e3e6eb", "linecolor": "#c4c9d2"}
    return {
        "title": {"text": title, "x": 0.01},
        "template": "none",  # plotly.py's default template adds ~10 kB of styles to every figure
        "autotypenumbers": "convert types",
        "yaxis": {"type": "linear", "tickprefix": "$", "rangemode": "tozero", **grid},
        "xaxis": {"type": "date", **grid},
        "legend": {"orientation": "h", "y": -0.15},
        "margin": {"l": 70, "r": 20, "t": 50, "b": 40},
        "height": 360,
        "font": {"family": "system-ui, sans-serif"},
        **extra,
    }


def _running_sum(amounts: Iterable[str]) -> list[str]:
    total, out = Decimal(0), []
    for amount in amounts:
        total += Decimal(amount)
        out.append(money(total))
    return out


# --- for people: the figures the finance page and the PDF show, formatted once ------------

BREAKDOWN_HEADERS = [
    "Name",
    "Requests",
    "Escalated",
    "Tokens in",
    "Tokens out",
    "Cost",
    "Baseline",
    "Savings",
    "Saved",
    "From cache",
    "Checks",
    "Per request",
    "vs previous",
]
BREAKDOWN_TITLES = {
    "by_team": "By team",
    "by_app": "By app",
    "by_policy": "By policy",
    "by_model": "By model",
    "by_end_user": "By end user",
    "by_tag": "By tag (a request counts under each of its tags)",
}


@dataclass(frozen=True, slots=True)
class Tile:
    label: str
    value: str
    note: str


def summary_tiles(data: Json) -> list[Tile]:
    """The headline figures: spend, baseline, savings, cache, checks, requests, unit cost, forecast, break-even."""
    totals, mom, forecast = data["totals"], data["month_over_month"], data["forecast"]
    previous = f"{date.fromisoformat(data['previous']['month'] + '-01'):%B}"
    change = f"vs {previous}: {dollars(mom['cost_change'], signed=True)}"
    if mom["cost_change_rate"] is not None:
        change += f" ({percent(mom['cost_change_rate'], signed=True)})"
    if forecast["low"] is None:
        spread = f"{forecast['method']}, too few days for a range"
    else:
        spread = f"95% range {dollars(forecast['low'])}–{dollars(forecast['high'])}, {forecast['method']}"
    next_month = f"{date.fromisoformat(forecast['month'] + '-01'):%B %Y}"
    tiles = [
        Tile("Spent", dollars(totals["cost"]), change),
        Tile("All-premium baseline", dollars(totals["baseline_cost"]), "the strongest tier alone"),
        Tile("Saved", dollars(totals["savings"]), f"{percent(totals['savings_rate'])} of the baseline"),
        Tile("Saved by the cache", dollars(totals["cost_avoided"]), f"{totals['cache_hits']:,} cache hits"),
        Tile("Quality checks", dollars(totals["quality_cost"]), _checks_note(totals["quality_checks"])),
        Tile("Requests", f"{totals['requests']:,}", f"{percent(totals['escalation_rate'])} escalated"),
        Tile("Cost per request", dollars(totals["cost_per_request"]), f"{totals['attempts']:,} model calls"),
        Tile(f"Forecast, {next_month}", dollars(forecast["cost"]), spread),
    ]
    if data["break_even"] is not None:
        months = data["break_even"]["months"]
        tiles.append(
            Tile(
                "Break-even",
                "never at this rate" if months is None else f"{months:.1f} months",
                f"of savings repay {dollars(data['break_even']['implementation_cost'])}",
            )
        )
    return tiles


def _checks_note(checks: int) -> str:
    return f"{checks:,} {'check' if checks == 1 else 'checks'} run, part of the spend"


def projection_rows(data: Json) -> list[list[str]]:
    """Header, then cost, baseline and savings per day, month and year at the current rate."""
    rows = [["At the current rate", "Cost", "Baseline", "Savings"]]
    for name in ("daily", "monthly", "annual"):
        p = data["projections"][name]
        rows.append([f"{name.capitalize()}", dollars(p["cost"]), dollars(p["baseline_cost"]), dollars(p["savings"])])
    return rows


def breakdown_tables(data: Json) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) for each breakdown; rows are `BREAKDOWN_HEADERS` cells, formatted."""
    return [
        (_title(key, title, data), [_breakdown_cells(e) for e in _shown(key, data)])
        for key, title in BREAKDOWN_TITLES.items()
    ]


def _shown(key: str, data: Json) -> list[Json]:
    entries: list[Json] = data.get(key, [])
    return entries[:TOP_ATTRIBUTED] if key in dict(ATTRIBUTED).values() else entries


def _title(key: str, title: str, data: Json) -> str:
    hidden = len(data.get(key, [])) - len(_shown(key, data))
    return f"{title}: the top {TOP_ATTRIBUTED}, {hidden:,} more in the CSV" if hidden > 0 else title


def _breakdown_cells(e: Json) -> list[str]:
    change = dollars(e["cost_change"], signed=True)
    if e["cost_change_rate"] is not None:
        change += f" ({percent(e['cost_change_rate'], signed=True)})"
    return [
        e["name"],
        f"{e['requests']:,}",
        percent(e["escalation_rate"]),
        f"{e['input_tokens']:,}",
        f"{e['output_tokens']:,}",
        dollars(e["cost"]),
        dollars(e["baseline_cost"]),
        dollars(e["savings"]),
        percent(e["savings_rate"]),
        dollars(e["cost_avoided"]),
        dollars(e["quality_cost"]),
        dollars(e["cost_per_request"]),
        change,
    ]
