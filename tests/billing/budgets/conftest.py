"""Fixtures the budget tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing.limits import budget_holds


@pytest.fixture(autouse=True)
def enqueued_alerts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple]]:
    """Budget alerts the hot path queued, recorded instead of run, unless the test commits.

    The eager task runs in an executor thread on a connection of its own, which waits
    for the test's open transaction (SQLite's write lock, PostgreSQL's foreign key check)
    that only ends after the request's event loop has waited for that thread: 20 s of
    SQLite timeout per request. Tests that commit (`transaction=True`) run the task.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        yield []
        return
    queued: list[tuple] = []
    monkeypatch.setattr(budget_holds, "_enqueue_alert", queued.append)
    yield queued
