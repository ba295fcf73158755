"""The request log's filters use the indexes made for them, as PostgreSQL plans them on 20,000 records.

PostgreSQL only: SQLite's planner says little about what a large table would do.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.http import QueryDict

from dashboard.requests.filters import RequestLogFilterSet
from dashboard.requests.selectors import request_log_query
from routing.models import RequestRecord
from testing.request_log import GeneratedLog, request_log_generate

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="EXPLAIN plans are PostgreSQL's")

RECORDS = 20_000


@pytest.fixture
def generated(db: None) -> GeneratedLog:
    return request_log_generate(RECORDS)


def plan(query: dict[str, Any]) -> str:
    filters = RequestLogFilterSet(QueryDict(mutable=True) | query, queryset=RequestRecord.objects.all())
    assert filters.is_valid(), filters.errors
    return request_log_query(filters.qs, after=None, size=50).explain()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({"team": "team-3"}, "record_team_created"),
        ({"app": "app-7"}, "record_app_created"),
        ({"end_user": "user-42"}, "record_end_user_created"),
        ({"status": "failed"}, "record_status_created"),
        ({"escalated": "yes"}, "record_escalated_created"),
        ({"cached": "yes"}, "record_cached_created"),
    ],
)
def test_each_filter_reads_its_index(generated, query, index):
    shown = plan(query)

    assert index in shown, shown
    assert "Seq Scan on routing_requestrecord" not in shown, shown


def test_a_key_a_model_and_a_policy_are_read_through_an_index(generated):
    # One key in ten, one model in seven: reading the time index until 51 match is as cheap.
    shown = plan({"key": str(generated.keys[3].id)}) + plan({"model": generated.models[1]})
    shown += plan({"policy": str(generated.policy.id)})

    assert "Seq Scan on routing_requestrecord" not in shown, shown


def test_the_unfiltered_page_reads_the_time_index_backwards(generated):
    shown = plan({})

    assert "Index Scan Backward" in shown and "Seq Scan" not in shown, shown


def test_a_later_page_starts_at_its_cursor_through_the_index(generated):
    from dashboard.requests.selectors import Cursor

    first = list(request_log_query(RequestRecord.objects.filter(team="team-3"), after=None, size=50))
    after = Cursor(first[-2].created, first[-2].id)
    shown = request_log_query(RequestRecord.objects.filter(team="team-3"), after=after, size=50).explain()

    assert "record_team_created" in shown and "Seq Scan" not in shown, shown
