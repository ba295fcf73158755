"""A poison record (built directly, past the API's checks) costs only itself, on any database.

Whatever the database or the row building raises for one record (a lone surrogate, an
integer out of a column's range, a malformed payload), the rest of its batch is stored,
the poison one becomes a `RecordDeadLetter`, is counted in /metrics, and reconciliation
reports it instead of saying the ledger and the records agree.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from prometheus_client.parser import text_string_to_metric_families

from billing.models import LedgerEntry
from routing import metrics
from routing.models import RecordDeadLetter, RequestRecord, RequestSample
from tests.conftest import flush_records
from tests.routing.records.test_dead_letter import enqueue, payload


def sampled(p: dict[str, Any], *, prompt: str = "What is 2 + 2?", max_tokens: int | None = 64) -> dict[str, Any]:
    p["sample"] = {
        "prompt": prompt,
        "answer": "4",
        "answer_tier": 0,
        "finish_reason": "stop",
        "max_tokens": max_tokens,
        "shadow": False,
    }
    return p


def poisoned(kind: str, p: dict[str, Any]) -> dict[str, Any]:
    if kind == "surrogate_user":
        p["end_user"] = "\udfff"
    elif kind == "surrogate_metadata_key":
        p["metadata"] = {"\udfff": "x"}
    elif kind == "surrogate_metadata_value":
        p["metadata"] = {"ticket": "T-\udfff"}
    elif kind == "surrogate_sampled_prompt":
        sampled(p, prompt="2 + 2 = \udfff")
    elif kind == "max_tokens_past_int64":
        sampled(p, max_tokens=2**63)
    elif kind == "max_tokens_past_int32":
        sampled(p, max_tokens=2**31)
    elif kind == "malformed_payload":
        del p["attempts"][0]["cost"]
    return p


def dead_letter_count(error: str) -> float:
    text = metrics.exposition().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cascadeops_record_dead_letters_total" and sample.labels.get("error") == error
    )


@pytest.mark.parametrize(
    "kind",
    [
        "surrogate_user",
        "surrogate_metadata_key",
        "surrogate_metadata_value",
        "surrogate_sampled_prompt",
        "max_tokens_past_int64",
        "max_tokens_past_int32",
        "malformed_payload",
    ],
)
def test_it_stores_the_innocent_records_and_dead_letters_the_poison_one(
    context, kind, django_capture_on_commit_callbacks
):
    innocent = [sampled(payload(context)), payload(context)]
    poison = poisoned(kind, payload(context))
    enqueue(innocent[0], poison, innocent[1])

    with django_capture_on_commit_callbacks(execute=True):
        assert flush_records() == 3

    stored = set(RequestRecord.objects.values_list("id", flat=True))
    assert {uuid.UUID(p["id"]) for p in innocent} <= stored
    assert RequestSample.objects.filter(record_id=innocent[0]["id"]).exists()
    letters = list(RecordDeadLetter.objects.all())
    if uuid.UUID(poison["id"]) in stored:
        # Only 2**31 on SQLite: its integers are 64-bit, so the record is fine there.
        assert kind == "max_tokens_past_int32" and letters == []
        return
    [letter] = letters
    assert letter.record_id == poison["id"]
    assert letter.record_created is not None
    assert letter.error.split(":")[0] in {"UnicodeEncodeError", "OverflowError", "DataError", "KeyError"}
    assert poison["id"] in letter.payload
    assert dead_letter_count(letter.error.split(":")[0]) >= 1
    assert sum(LedgerEntry.objects.values_list("requests", flat=True)) == 2

    with pytest.raises(CommandError, match="1 records in the dead letter"):
        call_command("ledger_reconcile")

    # Nothing is left blocking the buffer: the next record goes straight through.
    later = payload(context)
    enqueue(later)
    with django_capture_on_commit_callbacks(execute=True):
        assert flush_records() == 1
    assert RequestRecord.objects.filter(id=later["id"]).exists()


def test_a_dead_letter_delivered_twice_is_kept_once(context, django_capture_on_commit_callbacks):
    from routing.records.buffers import Claimed, spool_buffer
    from routing.records.flush import records_persist_one_by_one

    poison = poisoned("surrogate_user", payload(context))
    item = Claimed(handle="segment.jsonl:0/1", payload=poison)  # type: ignore[typeddict-item]
    records_persist_one_by_one(spool_buffer(), [item])
    records_persist_one_by_one(spool_buffer(), [item])

    assert RecordDeadLetter.objects.filter(record_id=poison["id"]).count() == 1
