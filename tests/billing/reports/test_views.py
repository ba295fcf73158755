"""The finance pages: who sees them, what they show, the downloads, and their query budgets."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from pypdf import PdfReader

from billing.choices import ReportStatus
from billing.models import MonthlyReport
from billing.permissions import FINANCE
from billing.reports import selectors
from billing.reports.build import report_build_monthly
from billing.reports.compute import CSV_COLUMNS, LedgerRow
from common import numbers
from tests.billing.reports.test_build import store
from tests.billing.reports.test_compute import FEB, as_schema_1, february_rows, january_rows, quality_check_row

pytestmark = pytest.mark.django_db
PASSWORD = "ledger-and-ink-42"


@pytest.fixture
def finance_client(client: Client) -> Client:
    user = User.objects.create_user("fiona", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE))
    assert client.login(username="fiona", password=PASSWORD)
    return client


@pytest.fixture
def february_report() -> MonthlyReport:
    store(february_rows(), batches=2)
    store(january_rows())
    return report_build_monthly(month=FEB)


@pytest.fixture
def checked_report() -> MonthlyReport:
    """February with one quality check on growth's gpt-4 (0.0123, no request)."""
    store([*february_rows(), quality_check_row()], batches=2)
    store(january_rows())
    return report_build_monthly(month=FEB)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def this_month_rows(n: int) -> list[LedgerRow]:
    today = selectors.billing_today()
    teams = ["growth", "search", "ops"]
    return [
        LedgerRow(today, teams[i % 3], f"app-{i % 7}", "default", "mixtral", requests=2, cost=Decimal("0.010000"))
        for i in range(n)
    ]


def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    response = client.get("/finance/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_account_without_the_finance_permission_gets_403(client: Client) -> None:
    User.objects.create_user("nobody", password=PASSWORD, is_staff=True)
    assert client.login(username="nobody", password=PASSWORD)
    assert client.get("/finance/").status_code == 403
    assert client.get("/finance/2025-02/report.csv").status_code == 403


def test_index_shows_this_month_live_and_the_stored_reports(
    finance_client: Client, february_report: MonthlyReport
) -> None:
    store(this_month_rows(3))
    response = finance_client.get("/finance/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"{selectors.billing_today():%B %Y} so far" in page
    assert "$0.03" in page  # this month: 3 rows at 0.01
    assert 'href="/finance/2025-02/"' in page and "February 2025" in page
    assert "$84.00" in page and "$210.00" in page  # February's stored headline


def test_report_page_shows_charts_tiles_and_breakdowns(finance_client: Client, february_report: MonthlyReport) -> None:
    response = finance_client.get("/finance/2025-02/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "snapshot" in page and f"price book version {february_report.price_book_version}" in page
    for figure in ("$84.00", "$294.00", "$210.00", "71.4 %", "18.8 %", "+$14.00 (+20.0 %)", "$191.11"):
        assert figure in page, figure
    for title in ("By team", "By app", "By policy", "By model"):
        assert title in page
    assert 'id="spend_by_team"' in page and 'id="finance-figures"' in page
    assert "/static/dashboard/vendor/plotly.min.js" in page


def test_the_current_month_is_computed_live(finance_client: Client) -> None:
    store(this_month_rows(4))
    month = selectors.billing_today()
    response = finance_client.get(f"/finance/{month:%Y-%m}/")
    assert response.status_code == 200
    assert "live" in response.content.decode() and "$0.04" in response.content.decode()
    assert "Projected from" in response.content.decode() and "hours of today" in response.content.decode()
    assert not MonthlyReport.objects.exists()


def test_a_month_without_a_report_is_404(finance_client: Client) -> None:
    assert finance_client.get("/finance/2024-06/").status_code == 404
    assert finance_client.get("/finance/2024-13/").status_code == 404
    assert finance_client.get("/finance/2024-06/report.pdf").status_code == 404


def test_a_failed_report_says_so(finance_client: Client) -> None:
    MonthlyReport.objects.create(month=date(2024, 6, 1), status=ReportStatus.FAILED, error="RuntimeError: boom")
    response = finance_client.get("/finance/2024-06/")
    assert response.status_code == 404
    assert "failed" in response.content.decode() and "RuntimeError: boom" in response.content.decode()
    assert finance_client.get("/finance/2024-06/report.csv").status_code == 404


def test_csv_download_has_the_documented_columns(finance_client: Client, february_report: MonthlyReport) -> None:
    response = finance_client.get("/finance/2025-02/report.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="cascadeops-finance-2025-02.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == CSV_COLUMNS
    assert (rows[0]["breakdown"], rows[0]["cost"], rows[0]["savings"]) == ("total", "84.000000", "210.000000")
    assert {r["name"] for r in rows if r["breakdown"] == "team"} == {"growth", "search"}


def test_pdf_download_opens_and_shows_the_month_and_totals(
    finance_client: Client, february_report: MonthlyReport
) -> None:
    response = finance_client.get("/finance/2025-02/report.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "February 2025" in text and "$84.00" in text and "$210.00" in text


def test_pdf_of_the_current_month_says_it_is_month_to_date(finance_client: Client) -> None:
    store(this_month_rows(2))
    response = finance_client.get(f"/finance/{selectors.billing_today():%Y-%m}/report.pdf")
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    assert "Month to date" in text and "$0.02" in text


def test_report_page_shows_the_quality_checks(finance_client: Client, checked_report: MonthlyReport) -> None:
    page = finance_client.get("/finance/2025-02/").content.decode()
    assert "Quality checks" in page and "1 check run, part of the spend" in page
    assert "$84.01" in page and "$209.99" in page  # spent includes the check; savings count it once
    assert ">Checks</th>" in page and ">$0.0123</td>" in page  # growth's and gpt-4's rows


def test_csv_and_pdf_show_the_quality_checks(finance_client: Client, checked_report: MonthlyReport) -> None:
    rows = list(csv.DictReader(io.StringIO(finance_client.get("/finance/2025-02/report.csv").content.decode())))
    by = {(r["breakdown"], r["name"]): r for r in rows}
    for key in (("total", "all"), ("team", "growth"), ("model", "gpt-4"), ("day", "2025-02-10")):
        assert (by[key]["quality_checks"], by[key]["quality_cost"]) == ("1", "0.012300"), key
    assert (by[("team", "search")]["quality_checks"], by[("model", "mixtral")]["quality_cost"]) == ("0", "0.000000")
    text = pdf_text(finance_client.get("/finance/2025-02/report.pdf").content)
    for figure in ("Quality checks", "1 check run, part of the spend", "$84.01", "$209.99"):
        assert figure in text, figure


def test_a_report_stored_before_quality_checks_still_renders_with_zero(
    finance_client: Client, february_report: MonthlyReport
) -> None:
    MonthlyReport.objects.filter(id=february_report.id).update(data=as_schema_1(february_report.data))
    page = finance_client.get("/finance/2025-02/")
    assert page.status_code == 200
    assert "Quality checks" in page.content.decode() and "0 checks run" in page.content.decode()
    rows = list(csv.DictReader(io.StringIO(finance_client.get("/finance/2025-02/report.csv").content.decode())))
    assert (rows[0]["quality_checks"], rows[0]["quality_cost"], rows[0]["cost"]) == ("0", "0.000000", "84.000000")
    pdf = finance_client.get("/finance/2025-02/report.pdf")
    assert pdf.status_code == 200 and "0 checks run" in pdf_text(pdf.content)
    assert finance_client.get("/finance/").status_code == 200
    assert MonthlyReport.objects.get().data["schema"] == 1  # read as the new schema, never rewritten


# Query budgets (NetBox-style): session, user, the user's and the groups' permissions, then the page's own reads.
AUTH_QUERIES = 4


@pytest.mark.parametrize("rows", [10, 400])
def test_index_queries_do_not_grow_with_the_ledger(
    finance_client: Client, february_report: MonthlyReport, django_assert_num_queries: object, rows: int
) -> None:
    store(this_month_rows(rows))
    # reports; this month's and last month's ledger, end users and tags; budgets
    with django_assert_num_queries(AUTH_QUERIES + 8):  # type: ignore[operator]
        assert finance_client.get("/finance/").status_code == 200


@pytest.mark.parametrize("rows", [10, 400])
def test_report_page_queries_do_not_grow_with_the_ledger(
    finance_client: Client, django_assert_num_queries: object, rows: int
) -> None:
    store(this_month_rows(rows))
    month = selectors.billing_today()
    # this month's and last month's ledger, end users and tags
    with django_assert_num_queries(AUTH_QUERIES + 6):  # type: ignore[operator]
        assert finance_client.get(f"/finance/{month:%Y-%m}/").status_code == 200


def test_stored_report_page_is_one_query(
    finance_client: Client, february_report: MonthlyReport, django_assert_num_queries: object
) -> None:
    with django_assert_num_queries(AUTH_QUERIES + 1):  # type: ignore[operator]
        assert finance_client.get("/finance/2025-02/").status_code == 200


def test_the_ledger_breaks_spend_down_by_end_user_and_tag(finance_client: Client) -> None:
    from billing.models import LedgerTagEntry

    today = selectors.billing_today()
    row = LedgerRow(today, "growth", "support-bot", "default", "mixtral", requests=2, cost=Decimal("0.5"))
    store([row, replace(row, end_user="customer-42", cost=Decimal("1.5"))])
    LedgerTagEntry.objects.create(day=today, key="feature", value="homework-help", team="growth", requests=2, cost=1)

    page = finance_client.get(f"/finance/{today:%Y-%m}/").content.decode()
    rows = list(csv.DictReader(io.StringIO(finance_client.get(f"/finance/{today:%Y-%m}/report.csv").content.decode())))

    assert "By end user" in page and "customer-42" in page and "feature=homework-help" in page
    by = {(r["breakdown"], r["name"]): r["cost"] for r in rows}
    assert by[("end_user", "customer-42")] == "1.500000" and by[("end_user", "(none)")] == "0.500000"
    assert by[("tag", "feature=homework-help")] == "1.000000"


def test_the_stored_reports_list_writes_dollars_by_the_number_rule(
    finance_client: Client, february_report: MonthlyReport
) -> None:
    html = finance_client.get("/finance/").content.decode()

    row = html.split("February 2025</a>", 1)[1].split("</tr>", 1)[0]
    totals = february_report.data["totals"]
    for figure in ("cost", "baseline_cost", "savings"):
        assert f'<td class="num">{numbers.usd(totals[figure])}</td>' in row
    assert re.findall(r'<td class="num">(.*?)</td>', row)[0].startswith("$")
