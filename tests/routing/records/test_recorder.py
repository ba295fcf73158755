"""The durable record buffer: records are delayed by crashes, never lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Message, Outcome
from routing.models import RequestAttempt, RequestRecord
from routing.records import flush, recorder
from routing.records.signals import records_stored
from tests.conftest import flush_records, subprocess_database_url

ROOT = Path(__file__).resolve().parents[3]


def payload(context, request_id: uuid.UUID | None = None) -> dict:
    key, policy = context
    chat = ChatRequest(messages=(Message("user", "What is 2 + 2?"),), user="u1")
    endpoint = policy.tiers[0].endpoint
    attempts = (
        Attempt(tier=0, endpoint_id=endpoint.id, model=endpoint.name, outcome=Outcome.ESCALATED, input_tokens=10,
                output_tokens=5, cost=Decimal("0.000009"), score=0.2),
        Attempt(tier=1, endpoint_id=policy.tiers[1].endpoint.id, model="replay-gpt-4", outcome=Outcome.ACCEPTED,
                input_tokens=10, output_tokens=6, cost=Decimal("0.00028"), score=0.9, quality_label=1.0),
    )  # fmt: skip
    result = CascadeResult(task="math", attempts=attempts, completion=Completion("4", "stop", 10, 6, 3.0))
    return recorder.record_payload(
        request_id=request_id or uuid.uuid4(), created=timezone.now(), key=key, policy=policy, chat=chat, result=result
    )


async def enqueue_all(payloads: list[dict]) -> None:
    for p in payloads:
        await recorder.enqueue(p)


def test_a_flushed_record_keeps_costs_as_decimals_and_every_attempt(context):
    import asyncio

    p = payload(context)
    asyncio.run(enqueue_all([p]))

    assert flush_records() == 1
    record = RequestRecord.objects.get(id=p["id"])
    assert record.cost == Decimal("0.000289")
    assert record.escalated and record.escalations == 1
    assert record.final_model == "replay-gpt-4"
    assert list(RequestAttempt.objects.filter(record=record).values_list("outcome", flat=True)) == [
        "escalated",
        "accepted",
    ]


def test_a_redelivered_batch_is_stored_and_announced_once(context):
    payloads = [payload(context) for _ in range(3)]
    announced: list[str] = []

    def receiver(sender, payloads, **kwargs):
        announced.extend(p["id"] for p in payloads)

    records_stored.connect(receiver)
    try:
        assert len(flush.records_persist(payloads=payloads)) == 3
        # A flusher died after its commit, before its ack: the batch comes again.
        assert flush.records_persist(payloads=payloads) == []
    finally:
        records_stored.disconnect(receiver)

    assert RequestRecord.objects.count() == 3
    assert RequestAttempt.objects.count() == 6
    assert sorted(announced) == sorted(p["id"] for p in payloads)


def test_a_batch_claimed_by_a_dead_flusher_is_taken_over(context, settings):
    import asyncio

    settings.CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS = 0.2
    payloads = [payload(context) for _ in range(4)]
    asyncio.run(enqueue_all(payloads))
    recorder.get_buffer().claim(limit=10)  # claimed, then the flusher "dies": no persist, no ack

    assert flush_records() == 0  # still held by the dead flusher
    time.sleep(0.3)
    assert flush_records() == 4
    assert RequestRecord.objects.count() == 4


def _start_flusher() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cascadeops.settings",
        "DATABASE_URL": subprocess_database_url(),
        "CASCADEOPS_RECORD_SPOOL_DIR": str(settings.CASCADEOPS_RECORD_SPOOL_DIR),
        "CASCADEOPS_RECORD_STREAM": settings.CASCADEOPS_RECORD_STREAM,
        "CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "manage.py", "run_recorder", "--batch", "50", "--interval", "0.05"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_the_flusher_mid_batch_loses_and_doubles_nothing(context):
    import asyncio

    payloads = [payload(context) for _ in range(1_500)]
    asyncio.run(enqueue_all(payloads))

    kills = 0
    deadline = time.monotonic() + 120
    while RequestRecord.objects.count() < len(payloads) and time.monotonic() < deadline:
        flusher = _start_flusher()
        time.sleep(1.0 + 0.15 * kills)  # start-up, then a moment inside some batch
        flusher.send_signal(signal.SIGKILL)
        flusher.wait()
        kills += 1
        if kills >= 4:
            break
    flusher = _start_flusher()
    try:
        while RequestRecord.objects.count() < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        flusher.terminate()
        flusher.wait(timeout=30)

    assert kills >= 1
    stored = set(RequestRecord.objects.values_list("id", flat=True))
    assert {uuid.UUID(p["id"]) for p in payloads} == stored
    assert RequestAttempt.objects.count() == 2 * len(payloads)
