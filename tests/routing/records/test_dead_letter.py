"""A record the database refuses is set aside in a dead letter; it never blocks the others."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import LedgerEntry
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Message, Outcome
from routing.models import RequestRecord
from routing.records import recorder
from routing.records.signals import records_stored
from tests.conftest import flush_records


def payload(context, *, metadata: dict[str, str] | None = None, input_tokens: int = 10) -> dict[str, Any]:
    key, policy = context
    chat = ChatRequest(messages=(Message("user", "What is 2 + 2?"),), metadata=metadata or {})
    endpoint = policy.tiers[0].endpoint
    attempt = Attempt(tier=0, endpoint_id=endpoint.id, model=endpoint.name, outcome=Outcome.ACCEPTED,
                      input_tokens=input_tokens, output_tokens=5, cost=Decimal("0.000009"), score=0.9)  # fmt: skip
    result = CascadeResult(task="math", attempts=(attempt,), completion=Completion("4", "stop", 10, 5, 3.0))
    return recorder.record_payload(
        request_id=uuid.uuid4(), created=timezone.now(), key=key, policy=policy, chat=chat, result=result
    )


def enqueue(*payloads: dict[str, Any]) -> None:
    async def append_all() -> None:
        for p in payloads:
            await recorder.enqueue(p)

    asyncio.run(append_all())


@pytest.fixture
def announced() -> Iterator[list[str]]:
    """The ids `records_stored` announced in transactions that committed."""
    ids: list[str] = []

    def on_stored(sender: type, payloads: list[dict[str, Any]], **kwargs: Any) -> None:
        transaction.on_commit(lambda: ids.extend(p["id"] for p in payloads))

    records_stored.connect(on_stored, dispatch_uid="test_dead_letter_announced")
    yield ids
    records_stored.disconnect(dispatch_uid="test_dead_letter_announced")


@pytest.fixture
def dead_letters() -> Iterator[Any]:
    """Reads the dead letter of this mode's buffer: (record id, error) pairs."""
    stream = f"{settings.CASCADEOPS_RECORD_STREAM}:dead"

    def read() -> list[tuple[str, str]]:
        if settings.REDIS_URL:
            from common.redis import sync_client

            entries = sync_client().xrange(stream)
            return [(json.loads(f[b"p"])["id"], f[b"error"].decode()) for _, f in entries]
        dead = settings.CASCADEOPS_RECORD_SPOOL_DIR / "dead"
        files = sorted(dead.glob("*.json")) if dead.exists() else []
        return [(json.loads(f.read_bytes())["id"], f.with_name(f"{f.name}.error").read_text()) for f in files]

    yield read
    if settings.REDIS_URL:
        from common.redis import sync_client

        sync_client().delete(stream)


def flush_all(capture: Any) -> int:
    with capture(execute=True):
        return flush_records()


def test_a_record_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_stored(
    context, announced, dead_letters, django_capture_on_commit_callbacks
):
    good, bad, also_good = payload(context), payload(context, input_tokens=-1), payload(context)
    enqueue(good, bad, also_good)

    assert flush_all(django_capture_on_commit_callbacks) == 3

    assert set(RequestRecord.objects.values_list("id", flat=True)) == {
        uuid.UUID(good["id"]),
        uuid.UUID(also_good["id"]),
    }
    assert sorted(announced) == sorted([good["id"], also_good["id"]])  # each stored record announced once
    assert sum(LedgerEntry.objects.values_list("requests", flat=True)) == 2
    [(dead_id, error)] = dead_letters()
    assert dead_id == bad["id"] and error.startswith("IntegrityError")

    # Nothing is left blocking the buffer: the next record goes straight through.
    later = payload(context)
    enqueue(later)
    assert flush_all(django_capture_on_commit_callbacks) == 1
    assert RequestRecord.objects.filter(id=later["id"]).exists()
    assert len(dead_letters()) == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite stores NUL characters; PostgreSQL refuses them")
def test_a_nul_character_postgresql_refuses_costs_only_its_own_record(
    context, announced, dead_letters, django_capture_on_commit_callbacks
):
    poisoned = payload(context, metadata={"ticket": "T-1\x00"})
    batch = [payload(context), poisoned, payload(context)]
    enqueue(*batch)

    assert flush_all(django_capture_on_commit_callbacks) == 3

    assert RequestRecord.objects.count() == 2
    assert sorted(announced) == sorted([batch[0]["id"], batch[2]["id"]])
    [(dead_id, error)] = dead_letters()
    assert dead_id == poisoned["id"] and error.startswith("DataError")
    assert flush_all(django_capture_on_commit_callbacks) == 0
