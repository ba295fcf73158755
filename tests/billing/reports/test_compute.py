"""Golden figures of a monthly report, computed by hand from a small ledger (no database).

The ledger: two teams on two models over two months.

February 2025 (28 days). Days 1–14, every day:
    growth  support-bot  default  mixtral  8 requests, 10 calls, cost 0.40, baseline 3.20, 2 cache hits avoiding 0.80
    growth  support-bot  default  gpt-4    2 requests (both escalated), cost 0.80, baseline 0.80
    search  search-api   strict   mixtral  5 requests, cost 0.30, baseline 2.50
    search  search-api   strict   gpt-4    1 request (escalated), cost 0.50, baseline 0.50
    → per day: 16 requests, 3 escalated, cost 2.00, baseline 7.00
Days 15–28: every figure doubled → per day: 32 requests, 6 escalated, cost 4.00, baseline 14.00.

January 2025: one day, growth cost 40.00 (baseline 100.00, 100 requests) and search cost
30.00 (baseline 90.00, 60 requests).

`quality_check_row()` adds one quality check on 10 February (growth, gpt-4): no request, one
model call costing 0.0123, all of it quality cost.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.reports.compute import (
    BREAKDOWN_HEADERS,
    BREAKDOWNS,
    CSV_COLUMNS,
    SCHEMA,
    LedgerRow,
    Tile,
    breakdown_tables,
    csv_rows,
    figures,
    forecast_total,
    money,
    month_before,
    report_data,
    summary_tiles,
    upgrade,
)

FEB = date(2025, 2, 1)
JAN = date(2025, 1, 1)
D = Decimal


def february_rows() -> list[LedgerRow]:
    rows = []
    for day in range(1, 29):
        k = 1 if day <= 14 else 2
        on = date(2025, 2, day)
        rows += [
            LedgerRow(
                on, "growth", "support-bot", "default", "mixtral",
                requests=8 * k, attempts=10 * k, input_tokens=8000 * k, output_tokens=4000 * k,
                cached_input_tokens=1000 * k, cache_hits=2 * k,
                cost=D("0.40") * k, baseline_cost=D("3.20") * k, cost_avoided=D("0.80") * k,
            ),
            LedgerRow(
                on, "growth", "support-bot", "default", "gpt-4",
                requests=2 * k, escalated_requests=2 * k, attempts=2 * k, input_tokens=2000 * k,
                output_tokens=1000 * k, cost=D("0.80") * k, baseline_cost=D("0.80") * k,
            ),
            LedgerRow(
                on, "search", "search-api", "strict", "mixtral",
                requests=5 * k, attempts=5 * k, input_tokens=5000 * k, output_tokens=2000 * k,
                cost=D("0.30") * k, baseline_cost=D("2.50") * k,
            ),
            LedgerRow(
                on, "search", "search-api", "strict", "gpt-4",
                requests=1 * k, escalated_requests=1 * k, attempts=1 * k, input_tokens=1000 * k,
                output_tokens=500 * k, cost=D("0.50") * k, baseline_cost=D("0.50") * k,
            ),
        ]  # fmt: skip
    return rows


def january_rows() -> list[LedgerRow]:
    on = date(2025, 1, 15)
    return [
        LedgerRow(on, "growth", "support-bot", "default", "gpt-4", requests=100, cost=D("40"), baseline_cost=D("100")),
        LedgerRow(on, "search", "search-api", "strict", "gpt-4", requests=60, cost=D("30"), baseline_cost=D("90")),
    ]


def quality_check_row() -> LedgerRow:
    return LedgerRow(
        date(2025, 2, 10), "growth", "support-bot", "default", "gpt-4",
        attempts=1, cost=D("0.0123"), quality_checks=1, quality_cost=D("0.0123"),
    )  # fmt: skip


QUALITY_FIGURES = ("quality_checks", "quality_cost")


def as_schema_1(data: dict) -> dict:
    """`data` as a report stored before quality checks: schema 1, without their figures."""

    def strip(figures: dict) -> dict:
        return {k: v for k, v in figures.items() if k not in QUALITY_FIGURES}

    old = {
        **data,
        "schema": 1,
        "totals": strip(data["totals"]),
        "previous": {**data["previous"], "totals": strip(data["previous"]["totals"])},
        "daily": [strip(day) for day in data["daily"]],
    }
    for _, key in BREAKDOWNS:
        old[key] = [strip(entry) for entry in data[key]]
    return old


@pytest.fixture
def february() -> dict:
    # 456.25 USD to implement: exactly two months of February's savings rate (see below).
    return report_data(month=FEB, rows=february_rows(), previous_rows=january_rows(), implementation_cost=D("456.25"))


def test_totals_sum_cost_baseline_and_savings(february: dict) -> None:
    totals = february["totals"]
    # cost 14·2 + 14·4 = 84; baseline 14·7 + 14·14 = 294; savings 294 − 84 = 210.
    assert (totals["cost"], totals["baseline_cost"], totals["savings"]) == ("84.000000", "294.000000", "210.000000")
    assert totals["savings_rate"] == 0.714286  # 210 / 294 = 5/7
    # requests 14·16 + 14·32 = 672, of which 14·3 + 14·6 = 126 escalated: 126 / 672 = 0.1875.
    assert (totals["requests"], totals["escalated_requests"], totals["escalation_rate"]) == (672, 126, 0.1875)
    assert totals["cost_per_request"] == "0.12500000"  # 84 / 672
    # The cache: 14·0.80 + 14·1.60 = 33.60 avoided by 14·2 + 14·4 = 84 hits.
    assert (totals["cost_avoided"], totals["cache_hits"]) == ("33.600000", 84)
    assert (totals["input_tokens"], totals["output_tokens"], totals["cached_input_tokens"]) == (
        672_000,
        315_000,
        42_000,
    )


def test_breakdown_by_team_with_change_from_last_month(february: dict) -> None:
    growth, search = february["by_team"]  # most expensive first
    # growth: cost 14·1.20 + 14·2.40 = 50.40, baseline 14·4 + 14·8 = 168, 420 requests, 84 escalated.
    assert growth["name"] == "growth"
    assert (growth["cost"], growth["baseline_cost"], growth["savings"]) == ("50.400000", "168.000000", "117.600000")
    assert (growth["savings_rate"], growth["escalation_rate"]) == (0.7, 0.2)
    assert growth["cost_per_request"] == "0.12000000"  # 50.40 / 420
    assert (growth["previous_cost"], growth["cost_change"], growth["cost_change_rate"]) == (
        "40.000000",
        "10.400000",
        0.26,  # 10.40 / 40
    )
    # search: cost 14·0.80 + 14·1.60 = 33.60, baseline 14·3 + 14·6 = 126, 252 requests, 42 escalated.
    assert (search["name"], search["cost"], search["savings"]) == ("search", "33.600000", "92.400000")
    assert (search["savings_rate"], search["escalation_rate"]) == (0.733333, 0.166667)  # 92.4/126, 42/252
    assert search["cost_change_rate"] == 0.12  # (33.60 − 30) / 30


def test_breakdown_by_model_keeps_a_model_only_last_month_had(february: dict) -> None:
    gpt4, mixtral = february["by_model"]
    # gpt-4: cost 14·1.30 + 14·2.60 = 54.60; January's 70.00 was all gpt-4: −15.40, −22%.
    assert (gpt4["name"], gpt4["cost"], gpt4["cost_change"], gpt4["cost_change_rate"]) == (
        "gpt-4",
        "54.600000",
        "-15.400000",
        -0.22,
    )
    # mixtral: cost 14·0.70 + 14·1.40 = 29.40, baseline 14·5.70 + 14·11.40 = 239.40; new this month.
    assert (mixtral["cost"], mixtral["savings"], mixtral["cost_change_rate"]) == ("29.400000", "210.000000", None)
    assert [p["name"] for p in february["by_policy"]] == ["default", "strict"]
    assert [a["name"] for a in february["by_app"]] == ["support-bot", "search-api"]


def test_month_over_month_compares_with_the_previous_month(february: dict) -> None:
    assert february["previous"]["month"] == "2025-01"
    assert february["previous"]["totals"]["cost"] == "70.000000"
    mom = february["month_over_month"]
    assert (mom["cost_change"], mom["cost_change_rate"]) == ("14.000000", 0.2)  # 84 vs 70
    assert (mom["requests_change"], mom["requests_change_rate"]) == (512, 3.2)  # 672 vs 160
    assert (mom["savings_change"], mom["savings_change_rate"]) == ("90.000000", 0.75)  # 210 vs 120


def test_projections_are_the_mean_day_over_a_month_and_a_year(february: dict) -> None:
    # Mean day: cost 84 / 28 = 3.00, baseline 294 / 28 = 10.50, savings 7.50.
    # A month is 365/12 days: 3 · 365/12 = 91.25; a year 365 days: 1095.
    p = february["projections"]
    assert p["daily"] == {"cost": "3.000000", "baseline_cost": "10.500000", "savings": "7.500000"}
    assert p["monthly"] == {"cost": "91.250000", "baseline_cost": "319.375000", "savings": "228.125000"}
    assert p["annual"] == {"cost": "1095.000000", "baseline_cost": "3832.500000", "savings": "2737.500000"}


def test_break_even_is_the_implementation_cost_over_monthly_savings(february: dict) -> None:
    # 456.25 / (7.50 · 365/12 = 228.125) = 2 months.
    assert february["break_even"] == {
        "implementation_cost": "456.250000",
        "monthly_savings": "228.125000",
        "months": 2.0,
    }


def test_no_break_even_without_an_implementation_cost() -> None:
    data = report_data(month=FEB, rows=february_rows(), previous_rows=[])
    assert data["break_even"] is None


def test_forecast_extends_the_daily_trend_over_next_month_with_a_range(february: dict) -> None:
    # Daily cost y = 2 for x = 1…14, 4 for x = 15…28 (n = 28).
    #   x̄ = 14.5, ȳ = 3, Sxx = n(n²−1)/12 = 1827, Sxy = Σ(x−x̄)(y−ȳ) = Σ15..28 − Σ1..14 = 196
    #   slope b = 196/1827 = 28/261, intercept a = 3 − 14.5·28/261 = 13/9
    # March: x = 29…59 (H = 31), Σx = 1364:
    #   point = 31·13/9 + 28/261·1364 = 49879/261 = 191.107280
    # Residuals: SSE = Syy − Sxy²/Sxx = 28 − 38416/1827 = 12740/1827; s² = SSE/26 = 490/1827
    #   Var = s²·(H + H²/n + (Σx − H·x̄)²/Sxx) = 490/1827 · (31 + 961/28 + 914.5²/1827) = 140.287503
    #   ± 1.96·√140.287503 = ± 23.214833 → 167.892447 … 214.322113
    assert february["forecast"] == {
        "month": "2025-03",
        "days": 31,
        "method": "linear trend",
        "confidence": 0.95,
        "cost": "191.107280",
        "low": "167.892447",
        "high": "214.322113",
    }


def test_forecast_of_a_short_series_by_hand() -> None:
    # y = 1, 3, 2, 4: x̄ = 2.5, ȳ = 2.5, Sxx = 5, Sxy = 4 → b = 0.8, a = 0.5.
    # Fitted 1.3, 2.1, 2.9, 3.7; SSE = 0.09 + 0.81 + 0.81 + 0.09 = 1.8, s² = 0.9.
    # Next two days x = 5, 6: point = 2·0.5 + 0.8·11 = 9.8;
    # Var = 0.9·(2 + 4/4 + 6²/5) = 9.18, ± 1.96·√9.18 = ± 5.938509.
    forecast = forecast_total([D(1), D(3), D(2), D(4)], gap=0, horizon=2)
    assert forecast.cost == D("9.8")
    assert forecast.low is not None and forecast.high is not None
    assert round(forecast.low, 6) == D("3.861491")
    assert round(forecast.high, 6) == D("15.738509")


def test_forecast_never_goes_below_zero() -> None:
    # A steep fall (slope −2.7 a day) extrapolated over 30 days is far below zero, range and all.
    forecast = forecast_total([D(9), D(6), D(3), D(1)], gap=0, horizon=30)
    assert (forecast.cost, forecast.low, forecast.high) == (0, 0, 0)


def test_forecast_without_enough_days_for_a_trend_is_the_mean_day_with_no_range() -> None:
    forecast = forecast_total([D(2), D(4)], gap=0, horizon=31)
    assert (forecast.cost, forecast.low, forecast.high, forecast.method) == (D(93), None, None, "daily mean")


def test_month_to_date_leaves_today_out_of_rates_and_compares_like_for_like() -> None:
    rows = [r for r in february_rows() if r.day <= date(2025, 2, 10)]
    previous = [
        LedgerRow(date(2025, 1, 5), "growth", "support-bot", "default", "gpt-4", requests=10, cost=D(10)),
        LedgerRow(date(2025, 1, 20), "growth", "support-bot", "default", "gpt-4", requests=10, cost=D(99)),
    ]
    data = report_data(month=FEB, rows=rows, previous_rows=previous, as_of=date(2025, 2, 10))
    assert data["period"] == {
        "start": "2025-02-01",
        "end": "2025-02-10",
        "days": 28,
        "elapsed_days": 10,
        "rate_days": 9,
        "complete": False,
    }
    assert data["totals"]["cost"] == "20.000000"  # ten days at 2.00, today included
    assert len(data["daily"]) == 10
    # January up to the 10th only: 10.00, not 109.00.
    assert data["previous"]["totals"]["cost"] == "10.000000"
    assert data["month_over_month"]["cost_change_rate"] == 1.0
    # Nine complete days at 2.00 a day, a flat trend: March is 31 · 2.00, with no noise to widen it.
    assert data["projections"]["daily"]["cost"] == "2.000000"
    assert (data["forecast"]["cost"], data["forecast"]["low"], data["forecast"]["high"]) == (
        "62.000000",
        "62.000000",
        "62.000000",
    )


def test_a_month_with_no_spend_has_zeros_and_no_rates() -> None:
    data = report_data(month=FEB, rows=[], previous_rows=[])
    assert data["totals"]["cost"] == "0.000000"
    assert data["totals"]["savings_rate"] is None
    assert data["totals"]["escalation_rate"] is None
    assert data["totals"]["cost_per_request"] is None
    assert data["month_over_month"]["cost_change_rate"] is None
    assert data["by_team"] == [] and data["forecast"]["cost"] == "0.000000"


def test_daily_series_and_team_lines_cover_every_day(february: dict) -> None:
    assert [d["day"] for d in february["daily"]][:2] == ["2025-02-01", "2025-02-02"]
    assert len(february["daily"]) == 28
    assert february["daily"][0]["cost"] == "2.000000" and february["daily"][27]["cost"] == "4.000000"
    growth = february["daily_by_team"][0]
    assert growth["name"] == "growth" and growth["cost"][0] == "1.200000" and len(growth["cost"]) == 28


def test_csv_has_the_documented_columns_and_one_row_per_figure(february: dict) -> None:
    rows = csv_rows(february)
    assert rows[0] == CSV_COLUMNS
    assert CSV_COLUMNS == [
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
    total = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    assert total["breakdown"] == "total" and total["cost"] == "84.000000" and total["cost_change_rate"] == "0.2"
    kinds = [row[1] for row in rows[1:]]
    assert kinds.count("team") == 2 and kinds.count("model") == 2 and kinds.count("day") == 28


def test_quality_checks_are_spend_in_the_totals_and_the_breakdowns() -> None:
    data = report_data(month=FEB, rows=[*february_rows(), quality_check_row()], previous_rows=january_rows())
    totals = data["totals"]
    assert (totals["quality_checks"], totals["quality_cost"]) == (1, "0.012300")
    # Part of the spend, so savings fall by the check once: 294 − 84.0123 = 209.9877.
    assert (totals["cost"], totals["baseline_cost"], totals["savings"]) == ("84.012300", "294.000000", "209.987700")
    assert (totals["requests"], totals["attempts"]) == (672, 757)  # 14·18 + 14·36 calls, and the check's
    growth, search = data["by_team"]
    assert (growth["name"], growth["quality_checks"], growth["quality_cost"]) == ("growth", 1, "0.012300")
    assert (search["quality_checks"], search["quality_cost"]) == (0, "0.000000")
    gpt4, mixtral = data["by_model"]
    assert (gpt4["name"], gpt4["quality_checks"], gpt4["quality_cost"], gpt4["cost"]) == (
        "gpt-4",
        1,
        "0.012300",
        "54.612300",
    )
    assert (mixtral["quality_checks"], mixtral["quality_cost"]) == (0, "0.000000")
    assert data["daily"][9]["quality_cost"] == "0.012300" and data["daily"][10]["quality_cost"] == "0.000000"
    assert data["previous"]["totals"]["quality_checks"] == 0


def test_quality_checks_in_the_csv_the_tiles_and_the_tables() -> None:
    data = report_data(month=FEB, rows=[*february_rows(), quality_check_row()], previous_rows=[])
    rows = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in csv_rows(data)[1:]]
    total, growth = rows[0], next(r for r in rows if (r["breakdown"], r["name"]) == ("team", "growth"))
    assert (total["quality_checks"], total["quality_cost"], total["cost"]) == ("1", "0.012300", "84.012300")
    assert (growth["quality_checks"], growth["quality_cost"]) == ("1", "0.012300")
    assert Tile("Quality checks", "$0.0123", "1 check run, part of the spend") in summary_tiles(data)
    (_, by_team), *_ = breakdown_tables(data)
    checks = BREAKDOWN_HEADERS.index("Checks")
    assert [row[checks] for row in by_team] == ["$0.0123", "$0.00"]


def test_a_report_stored_before_quality_checks_reads_them_as_zero(february: dict) -> None:
    old = as_schema_1(february)
    assert february["schema"] == SCHEMA == 3 and "quality_cost" not in old["totals"]
    assert upgrade(old) == february  # February had no checks: zeros are its figures
    assert "quality_cost" not in old["by_team"][0]  # the stored data is left alone
    assert upgrade(february) is february


def test_figures_keep_money_as_strings_on_linear_axes(february: dict) -> None:
    figs = figures(february)
    by_team = figs["spend_by_team"]
    assert [trace["name"] for trace in by_team["data"]] == ["growth", "search"]
    assert by_team["data"][0]["y"][0] == "1.200000"
    assert by_team["layout"]["barmode"] == "stack" and by_team["layout"]["yaxis"]["type"] == "linear"
    actual = figs["actual_vs_baseline"]["data"][1]
    assert actual["name"] == "Actual" and actual["y"][-1] == "84.000000"  # cumulative


def test_month_before_january_is_december() -> None:
    assert month_before(JAN) == date(2024, 12, 1)


def test_a_month_to_date_projects_from_todays_spend_so_far_and_says_so() -> None:
    rows = [r for r in february_rows() if r.day <= date(2025, 2, 10)]

    data = report_data(month=FEB, rows=rows, previous_rows=[], as_of=date(2025, 2, 10), day_fraction=0.5)

    # Nine days at 2.00 and half of today at 2.00: 20.00 over 9.5 days.
    assert data["projections"]["daily"]["cost"] == money(D(20) / D("9.5"))
    assert data["period"]["rate_days"] == 9.5
    assert data["projection_basis"] == (
        "Projected from the mean day of 9 complete days and 12.0 hours of today (spend so far, pro rata)."
    )
    assert data["forecast"]["cost"] == "62.000000"  # fitted on the complete days


def test_on_the_first_day_the_projection_is_todays_rate_so_far_not_zero() -> None:
    spent = [LedgerRow(date(2025, 2, 1), "growth", "support-bot", "default", "gpt-4", requests=3, cost=D("1.08"))]

    data = report_data(month=FEB, rows=spent, previous_rows=[], as_of=date(2025, 2, 1), day_fraction=0.25)

    assert data["projections"]["daily"]["cost"] == "4.320000"  # 1.08 in six hours
    assert data["forecast"]["cost"] == money(D("4.32") * 31)
    assert data["projection_basis"] == "Projected from today's spend so far (6.0 hours of today), as a daily rate."


def test_the_first_minutes_count_as_an_hour() -> None:
    spent = [LedgerRow(date(2025, 2, 1), "growth", "support-bot", "default", "gpt-4", requests=1, cost=D("0.01"))]

    data = report_data(month=FEB, rows=spent, previous_rows=[], as_of=date(2025, 2, 1), day_fraction=0.001)

    assert data["projections"]["daily"]["cost"] == "0.240000"


def end_user_row(day: int, end_user: str, cost: str, requests: int = 1) -> LedgerRow:
    return LedgerRow(date(2025, 2, day), "", "", "", "", requests=requests, cost=D(cost), end_user=end_user)


def tag_row(day: int, tag: str, cost: str, requests: int = 1) -> LedgerRow:
    return LedgerRow(date(2025, 2, day), "", "", "", "", requests=requests, cost=D(cost), tag=tag)


def test_spend_is_broken_down_by_end_user_and_by_tag() -> None:
    end_users = [
        end_user_row(1, "customer-42", "3.00", 3),
        end_user_row(2, "customer-7", "1.00"),
        end_user_row(2, "", "0.50"),
    ]
    tags = [tag_row(1, "feature=homework-help", "3.00", 3), tag_row(2, "feature=search", "1.00")]
    before = [LedgerRow(date(2025, 1, 3), "", "", "", "", requests=1, cost=D("2"), end_user="customer-42")]

    data = report_data(
        month=FEB, rows=february_rows(), previous_rows=[], end_user_rows=(end_users, before), tag_rows=(tags, [])
    )

    assert [(e["name"], e["cost"], e["requests"]) for e in data["by_end_user"]] == [
        ("customer-42", "3.000000", 3),
        ("customer-7", "1.000000", 1),
        ("(none)", "0.500000", 1),
    ]
    assert data["by_end_user"][0]["cost_change"] == "1.000000"
    assert [(e["name"], e["cost"]) for e in data["by_tag"]] == [
        ("feature=homework-help", "3.000000"),
        ("feature=search", "1.000000"),
    ]
    kinds = {row[1] for row in csv_rows(data)[1:]}
    assert {"end_user", "tag"} <= kinds
    titles = [title for title, _ in breakdown_tables(data)]
    assert "By end user" in titles and "By tag (a request counts under each of its tags)" in titles


def test_the_page_lists_the_top_end_users_and_the_csv_all_of_them() -> None:
    many = [end_user_row(1, f"user-{n:03d}", f"{n}.00") for n in range(1, 31)]

    data = report_data(month=FEB, rows=[], previous_rows=[], end_user_rows=(many, []))

    title, rows = next((t, r) for t, r in breakdown_tables(data) if t.startswith("By end user"))
    assert title == "By end user: the top 25, 5 more in the CSV" and len(rows) == 25 and rows[0][0] == "user-030"
    assert sum(1 for row in csv_rows(data) if row[1] == "end_user") == 30


def test_a_report_stored_before_end_users_and_tags_has_empty_breakdowns(february: dict) -> None:
    old = {**february, "schema": 2}
    del old["by_end_user"], old["by_tag"]

    upgraded = upgrade(old)

    assert (upgraded["by_end_user"], upgraded["by_tag"], upgraded["schema"]) == ([], [], SCHEMA)
