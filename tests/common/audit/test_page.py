"""The audit trail's page: filtered, paginated, values before and after, the CSV of the selection."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from billing.models import Budget
from billing.permissions import FINANCE
from common.audit.context import Actor, acting_as
from common.audit.views import PAGE_SIZE

pytestmark = pytest.mark.django_db
PASSWORD = "ledger-and-ink-42"
# Session, user, the user's and the groups' permissions.
AUTH_QUERIES = 4


@pytest.fixture
def finance_client(client: Client) -> Client:
    """A finance reader who is not staff."""
    user = User.objects.create_user("fiona", password=PASSWORD)
    user.groups.add(Group.objects.get(name=FINANCE))
    assert client.login(username="fiona", password=PASSWORD)
    return client


def budgets_changed(*, by: str = "alice", count: int = 1) -> None:
    with acting_as(Actor(name=by, source="admin", address="10.0.0.7")):
        for i in range(count):
            budget = Budget.objects.create(name=f"{by}-{i}", scope="team", scope_value="growth", limit=Decimal("100"))
            budget.limit = Decimal("250.5")
            budget.save()


def rows(html: str) -> list[str]:
    body = html.split('id="audit-trail"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [row for row in re.findall(r"<tr>(.*?)</tr>", body, re.S) if "No entry matches" not in row]


def test_it_shows_who_changed_what_and_the_values_before_and_after(finance_client: Client) -> None:
    budgets_changed()

    response = finance_client.get(reverse("audit:list"))

    html = response.content.decode()
    assert response.status_code == 200 and 'class="purpose"' in html
    update, create = rows(html)
    assert "alice" in update and "Admin" in update and "10.0.0.7" in update and "billing.budget" in update
    assert "<code>limit</code> 100.0000 → 250.5000" in update
    assert "<summary>11 values set</summary>" in create and "<code>name</code> alice-0; " in create
    assert "→" not in create


def test_a_deletion_keeps_the_values_it_had_folded_away(finance_client: Client) -> None:
    budgets_changed()
    Budget.objects.get().delete()

    deletion = rows(finance_client.get(reverse("audit:list"), {"action": "delete"}).content.decode())

    assert len(deletion) == 1 and "<summary>11 values it had</summary>" in deletion[0]
    assert "<code>limit</code> 250.5000" in deletion[0]


def test_it_filters_by_actor_source_object_type_and_time(finance_client: Client) -> None:
    budgets_changed(by="alice")
    budgets_changed(by="bob")

    def shown(**query: str) -> int:
        return len(rows(finance_client.get(reverse("audit:list"), query).content.decode()))

    assert shown(actor="bob") == 2
    assert shown(source="admin", object_type="billing.budget") == 4
    assert shown(object_type="routing.policy") == 0
    assert shown(created_after="2999-01-01T00:00:00Z") == 0
    assert shown(created_before="2999-01-01T00:00") == 4


def test_a_filter_it_cannot_read_is_a_400_with_its_message(finance_client: Client) -> None:
    response = finance_client.get(reverse("audit:list"), {"created_after": "yesterday", "source": "moon"})

    assert response.status_code == 400
    assert "Must be an ISO 8601 date-time" in response.content.decode()


def test_it_pages_through_the_trail_keeping_the_filters(finance_client: Client) -> None:
    budgets_changed(count=PAGE_SIZE // 2 + 1)  # two entries each: one more than a page

    first = finance_client.get(reverse("audit:list"), {"actor": "alice"}).content.decode()
    older = re.search(r'href="\?([^"]+)" rel="next"', first)
    assert older is not None and parse_qs(older.group(1).replace("&amp;", "&")) == {"actor": ["alice"], "page": ["2"]}
    second = finance_client.get(reverse("audit:list") + "?" + older.group(1).replace("&amp;", "&")).content.decode()

    assert len(rows(first)) == PAGE_SIZE and len(rows(second)) == 2
    assert "Page 2 of 2" in second


def test_its_csv_link_downloads_the_same_selection(finance_client: Client) -> None:
    budgets_changed(by="alice")
    budgets_changed(by="bob")

    html = finance_client.get(reverse("audit:list"), {"actor": "bob", "page": "1"}).content.decode()
    link = re.search(r'<a href="([^"]+)" download>CSV</a>', html)
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(url).query) == {"actor": ["bob"]}
    csv_text = finance_client.get(url).getvalue().decode()

    assert csv_text.count("\n") == 3 and "alice" not in csv_text


def test_it_needs_the_view_auditentry_permission(client: Client) -> None:
    User.objects.create_user("nobody", password=PASSWORD)
    client.login(username="nobody", password=PASSWORD)

    assert client.get(reverse("audit:list")).status_code == 403


@pytest.mark.parametrize("changes", [1, PAGE_SIZE])
def test_its_queries_do_not_grow_with_the_trail(
    finance_client: Client, django_assert_num_queries: object, changes: int
) -> None:
    budgets_changed(count=changes)
    # the count for the pager, then the page
    with django_assert_num_queries(AUTH_QUERIES + 2):  # type: ignore[operator]
        assert finance_client.get(reverse("audit:list"), {"actor": "alice"}).status_code == 200
