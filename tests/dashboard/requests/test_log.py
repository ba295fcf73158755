"""The request log: filters, keyset pages, one request's attempts and kept text, and their query counts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.requests.selectors import Cursor
from routing.exceptions import ApiError, BudgetExceeded
from routing.models import RequestRecord, RequestText
from routing.records.texts import request_texts_purge
from tests.dashboard.requests.conftest import keep_text
from tests.dashboard.traffic import Traffic

LOG = reverse("dashboard:requests")
# The session, the user, the user's and the group's permissions, the policies and keys of
# the filter form, the page of records. Never a count of the table, never one per row.
LIST_QUERIES = 7
# The session, the user, the permissions (2), the record, its attempts, its text; the
# tiers' thresholds when an attempt escalated.
DETAIL_QUERIES = 7


def shown_ids(response: Any) -> list[str]:
    return [str(r.id) for r in response.context["page"].rows]


def test_an_anonymous_visitor_is_sent_to_sign_in(client, db):
    response = client.get(LOG)

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_user_without_the_records_permission_gets_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("intern", password="x"))

    assert client.get(LOG).status_code == 403


def test_it_lists_records_newest_first_in_a_pinned_number_of_queries(
    client, ops_user, log_traffic, django_assert_num_queries
):
    now = timezone.now()
    stored = log_traffic.store([log_traffic.payload(created=now - timedelta(minutes=m)) for m in range(30)])
    client.force_login(ops_user)

    with django_assert_num_queries(LIST_QUERIES):
        response = client.get(LOG)

    assert response.status_code == 200
    assert shown_ids(response) == [p["id"] for p in stored]
    assert b"support-bot" in response.content


def test_filters_keep_the_same_query_count(client, ops_user, log_traffic, django_assert_num_queries):
    log_traffic.send(5, escalated=True, user="ann")
    client.force_login(ops_user)
    query = {"team": "growth", "end_user": "ann", "escalated": "yes", "cost_min": "0.00001", "latency_max": "500"}

    with django_assert_num_queries(LIST_QUERIES):
        response = client.get(LOG, query)

    assert len(shown_ids(response)) == 5


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"team": "research"}, {"other"}),
        (
            {"app": "support-bot"},
            {"plain", "escalated", "failed", "cached", "dear", "slow", "tagged", "refused", "bad input"},
        ),
        ({"end_user": "ann"}, {"escalated"}),
        ({"tag": "feature=homework"}, {"tagged"}),
        ({"tag": "feature"}, {"tagged"}),
        ({"status": "failed"}, {"failed"}),
        ({"status": "refused"}, {"refused", "bad input"}),
        ({"reason": "429"}, {"refused"}),
        ({"reason": "budget_exceeded"}, {"refused"}),
        ({"reason": "400"}, {"bad input"}),
        ({"outcome": "escalated"}, {"escalated"}),
        ({"outcome": "failed"}, {"failed"}),
        ({"escalated": "yes"}, {"escalated"}),
        ({"cached": "yes"}, {"cached"}),
        ({"cost_min": "0.5"}, {"dear"}),
        ({"cost_max": "0"}, {"failed", "cached", "refused", "bad input"}),
        ({"latency_min": "5000"}, {"slow"}),
        ({"q": "ann"}, {"escalated"}),
        ({"q": "research"}, set()),  # a team is not an end user: the team filter finds it
    ],
)
def test_each_filter_finds_its_requests(client, ops_user, log_traffic, second_key, query, expected):
    ids = _varied_traffic(log_traffic, second_key)
    client.force_login(ops_user)

    response = client.get(LOG, query)

    assert response.status_code == 200
    assert {ids[i] for i in shown_ids(response)} == expected


def test_filters_by_time_policy_key_and_model(client, ops_user, log_traffic, second_key):
    ids = _varied_traffic(log_traffic, second_key)
    old = log_traffic.store([log_traffic.payload(created=timezone.now() - timedelta(days=3))])[0]["id"]
    client.force_login(ops_user)
    since = (timezone.now() - timedelta(days=1)).isoformat()

    recent = shown_ids(client.get(LOG, {"since": since}))
    by_key = shown_ids(client.get(LOG, {"key": second_key.key.id}))
    by_policy = shown_ids(client.get(LOG, {"policy": log_traffic.policy.id}))
    strong = log_traffic.snapshot.tiers[1].endpoint.name
    by_model = shown_ids(client.get(LOG, {"model": strong}))

    assert old not in recent and len(recent) == len(ids)
    assert {ids[i] for i in by_key} == {"other"}
    assert len(by_policy) == len(ids) + 1
    assert {ids[i] for i in by_model} == {"escalated"}


def test_a_request_id_finds_that_request(client, ops_user, log_traffic):
    wanted = log_traffic.send(3)[1]["id"]
    client.force_login(ops_user)

    assert shown_ids(client.get(LOG, {"q": wanted})) == [wanted]


def test_pages_walk_every_record_once_even_when_times_tie(client, ops_user, log_traffic, settings):
    settings.CASCADEOPS_REQUEST_LOG_PAGE_SIZE = 4
    same = timezone.now()
    stored = log_traffic.store([log_traffic.payload(created=same - timedelta(seconds=i // 3)) for i in range(10)])
    client.force_login(ops_user)

    seen: list[str] = []
    response = client.get(LOG, {"team": "growth"})
    while True:
        seen += shown_ids(response)
        after = response.context["page"].next
        if after is None:
            break
        response = client.get(LOG, {"team": "growth", "after": after.encode()})

    assert sorted(seen) == sorted(p["id"] for p in stored)
    assert len(seen) == len(set(seen)) == 10


@pytest.mark.parametrize(
    "query",
    [
        {"cost_min": "cheap"},
        {"cost_max": "1e400"},
        {"latency_min": "-5"},
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00+20:00"},
        {"status": "exploded"},
        {"policy": "999999"},
        {"after": "not-a-cursor"},
        {"after": "2026-01-01T00:00:00~nope"},
    ],
)
def test_bad_filters_are_a_400_with_the_form_never_a_500(client, ops_user, log_traffic, query):
    log_traffic.send(1)
    client.force_login(ops_user)

    response = client.get(LOG, query)

    assert response.status_code == 400
    assert b"request-filters" in response.content


def test_a_cursor_round_trips():
    cursor = Cursor(timezone.now(), uuid.uuid4())

    assert Cursor.decode(cursor.encode()) == cursor


def test_the_detail_shows_each_attempt_and_why_it_escalated(client, ops_user, log_traffic, django_assert_num_queries):
    stored = log_traffic.send(1, escalated=True, user="ann")[0]
    client.force_login(ops_user)

    with django_assert_num_queries(DETAIL_QUERIES + 1):
        response = client.get(reverse("dashboard:request", args=[stored["id"]]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "scored 0.20, below the tier&#x27;s threshold 0.90: the next tier was asked" in html
    assert "answer returned to the caller" in html
    assert "No text kept" in html


def test_an_unknown_request_is_a_404(client, ops_user):
    client.force_login(ops_user)

    assert client.get(reverse("dashboard:request", args=[uuid.uuid4()])).status_code == 404


def test_a_policy_that_keeps_text_shows_the_prompt_and_answers_redacted(client, ops_user, log_traffic):
    keep_text(log_traffic.policy, patterns=r"\b\d{4}-\d{4}\b")
    stored = log_traffic.store([_with_prompt(log_traffic, "My card is 1234-5678, what is 2 + 2?")])[0]
    client.force_login(ops_user)

    html = client.get(reverse("dashboard:request", args=[stored["id"]])).content.decode()

    assert "My card is [redacted], what is 2 + 2?" in html
    assert "1234-5678" not in html
    assert 'data-answer="1"' in html


def test_a_policy_that_keeps_no_text_stores_none(log_traffic):
    stored = log_traffic.send(2)

    assert all(p["text"] is None for p in stored)
    assert not RequestText.objects.exists()


def test_the_purge_deletes_text_past_the_policy_retention_only(log_traffic):
    keep_text(log_traffic.policy, days=7)
    now = timezone.now()
    old, fresh = log_traffic.store(
        [log_traffic.payload(created=now - timedelta(days=8)), log_traffic.payload(created=now - timedelta(days=6))]
    )

    deleted = request_texts_purge(now=now, default_retention_days=30)

    assert deleted == 1
    assert list(RequestText.objects.values_list("record_id", flat=True)) == [uuid.UUID(fresh["id"])]
    assert RequestRecord.objects.filter(id=old["id"]).exists()  # the record stays; only its text goes


def test_a_deleted_policys_text_follows_the_default_retention(log_traffic):
    keep_text(log_traffic.policy, days=365)
    now = timezone.now()
    log_traffic.store([log_traffic.payload(created=now - timedelta(days=40))])
    RequestText.objects.update(policy_ref=None)

    assert request_texts_purge(now=now, default_retention_days=30) == 1


def _with_prompt(traffic: Traffic, prompt: str) -> dict[str, Any]:
    from routing.engine.types import ChatRequest, Message
    from routing.records.texts import text_payload

    payload = traffic.payload(escalated=True)
    chat = ChatRequest(messages=(Message("user", prompt),))
    result = _result_of(traffic, escalated=True)
    payload["text"] = text_payload(policy_id=traffic.policy.id, chat=chat, result=result)
    return payload


def _result_of(traffic: Traffic, *, escalated: bool) -> Any:
    from routing.engine.types import CascadeResult, Completion

    attempts = traffic._attempts(escalated=escalated, failed=False, cost=Decimal("0.0001"), score=0.95, label=None)
    attempts = tuple(a.__class__(**{**_fields(a), "answer": f"answer {i}"}) for i, a in enumerate(attempts))
    return CascadeResult(task="math", attempts=attempts, completion=Completion("4", "stop", 10, 5, 100.0))


def _fields(attempt: Any) -> dict[str, Any]:
    return {name: getattr(attempt, name) for name in attempt.__dataclass_fields__}


def _refused(traffic: Traffic, error: ApiError) -> dict[str, Any]:
    from routing.records.refusals import refusal_payload

    return dict(refusal_payload(key=traffic.key, policy=traffic.snapshot, error=error, chat=None, latency_ms=1.0))


def _varied_traffic(traffic: Traffic, other: Traffic) -> dict[str, str]:
    """One request of each kind, by id: what each filter should find."""
    now = timezone.now()
    kinds = {
        "plain": traffic.payload(created=now),
        "escalated": traffic.payload(created=now, escalated=True, user="ann"),
        "failed": traffic.payload(created=now, failed=True),
        "cached": traffic.payload(created=now, cache="exact", cost="0"),
        "dear": traffic.payload(created=now, cost="0.75"),
        "slow": traffic.payload(created=now, latency_ms=9000.0),
        "tagged": traffic.payload(created=now, metadata={"feature": "homework"}),
        "other": other.payload(created=now),
        "refused": _refused(traffic, BudgetExceeded("The team's day budget is spent.", retry_after_s=60)),
        "bad input": _refused(traffic, ApiError("messages must not be empty", param="messages")),
    }
    traffic.store(list(kinds.values()))
    return {p["id"]: kind for kind, p in kinds.items()}


def test_the_list_and_the_detail_write_money_and_time_by_the_number_rule(client, ops_user, log_traffic):
    stored = log_traffic.store([log_traffic.payload(cost="0.000375", latency_ms=2260.0)])[0]
    client.force_login(ops_user)

    listed = client.get(LOG).content.decode()
    detail = client.get(reverse("dashboard:request", args=[stored["id"]])).content.decode()

    for html in (listed, detail):
        assert '<td class="num">$0.000375</td>' in html and "2.26 s" in html
        assert "0.000375000" not in html and "2260 ms" not in html
