"""The flusher: claimed records into the database with their ledger lines, each exactly once. See docs/records.md."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import redis
from django.db import IntegrityError, InterfaceError, OperationalError, transaction

from billing.ledger.services import ledger_append
from common.bulk import bulk_insert
from routing import metrics
from routing.models import (
    ApiKey,
    ModelEndpoint,
    Policy,
    RecordDeadLetter,
    RequestAttempt,
    RequestRecord,
    RequestText,
)
from routing.records.buffers import Claimed, RecordBuffer, drained_buffers
from routing.records.ledger import ledger_lines
from routing.records.payload import AttemptPayload
from routing.records.payload import RecordPayload as Payload
from routing.records.signals import records_stored

logger = logging.getLogger(__name__)

PERSIST_ATTEMPTS = 3


# The database is down or unreachable: no record is to blame, so the batch stays claimed
# (unacknowledged) and is tried again whole. Anything else a record can cause: a value out
# of a column's range (DataError, or OverflowError on SQLite), a lone surrogate
# (UnicodeEncodeError in the driver), a malformed payload (KeyError, ValueError), a
# constraint checked on commit (IntegrityError).
UNAVAILABLE = (OperationalError, InterfaceError)


# Payload keys copied to columns as they are (money, times and foreign keys are converted).
RECORD_FIELDS = frozenset(
    {"id", "api_key_prefix", "team", "app", "end_user", "policy_name", "policy_version", "task_category",
     "status", "final_tier", "final_model", "escalations", "escalated", "input_tokens", "output_tokens",
     "latency_ms", "score", "quality_label", "error", "metadata", "cache", "streamed", "selection",
     "experiment_arm_id"}
)  # fmt: skip


ATTEMPT_FIELDS = frozenset(
    {"tier", "model", "outcome", "input_tokens", "output_tokens", "cached_input_tokens", "price_version",
     "latency_ms", "score", "error", "error_kind", "quality_label"}
)  # fmt: skip


def flush_pending(limit: int = 5_000) -> int:
    """Move up to `limit` buffered records (per buffer) into the database; returns how many it read.

    While Redis is unreachable the stream is skipped and the local spool, where the web
    workers put records meanwhile, is still flushed (docs/redis-outage.md).
    """
    total = 0
    for buffer in drained_buffers():
        try:
            total += flush_buffer(buffer, limit)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("The record stream cannot be read (%s); it is flushed once Redis answers", exc)
    return total


def flush_buffer(buffer: RecordBuffer, limit: int) -> int:
    claimed = buffer.claim(limit)
    if not claimed:
        return 0
    try:
        records_persist(payloads=[c.payload for c in claimed])
    except UNAVAILABLE:
        raise
    except Exception:
        # One record the database refuses, or one we cannot even turn into rows, must
        # not hold the whole batch back forever: store them one by one instead.
        logger.warning("A batch of %d records failed; storing them one by one", len(claimed), exc_info=True)
        records_persist_one_by_one(buffer, claimed)
    # Acknowledge only after the commit: a crash before this line re-delivers the batch,
    # and the idempotent insert turns the second delivery into a no-op.
    buffer.ack([c.handle for c in claimed])
    return len(claimed)


def records_persist_one_by_one(buffer: RecordBuffer, claimed: list[Claimed]) -> None:
    """Store each record in its own transaction; move the ones still refused to the dead letter.

    Each stored record is announced in its own transaction, so `records_stored` keeps
    counting every record exactly once. A refused record is logged and set aside with
    the error, to be fixed and replayed by hand; it no longer blocks the others.
    """
    for item in claimed:
        try:
            records_persist(payloads=[item.payload])
        except UNAVAILABLE:
            raise
        except Exception as exc:
            logger.error("The database refuses request record %s; moved to the dead letter: %s", item.handle, exc)
            record_dead_letter(buffer, item, exc)


def record_dead_letter(buffer: RecordBuffer, item: Claimed, exc: Exception) -> None:
    """Set a refused record aside: a `RecordDeadLetter` row (the admin and reconciliation see it),
    the record itself in the buffer's dead letter (a file or a stream, for replay), and a count.

    The row keeps the payload as escaped ASCII JSON, which no database refuses; it is
    written first, so a database gone meanwhile leaves the record claimed, to come back.
    """
    error = printable(f"{type(exc).__name__}: {exc}")
    try:
        with transaction.atomic():
            RecordDeadLetter.objects.update_or_create(
                entry=printable(item.handle)[:200], defaults=_dead_letter(item, error)
            )
    except UNAVAILABLE:
        raise
    except Exception:
        logger.exception("Could not store the dead letter of %s in the database", item.handle)
    buffer.dead_letter([(item, error)])
    metrics.dead_lettered(type(exc).__name__)


def _dead_letter(item: Claimed, error: str) -> dict[str, object]:
    payload = cast("dict[str, Any]", item.payload)
    return {
        "record_id": printable(str(payload.get("id", "")))[:64],
        "record_created": _created(payload.get("created")),
        "error": error,
        "payload": json.dumps(payload, default=repr),
    }


def _created(value: object) -> datetime | None:
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


def printable(text: str) -> str:
    """`text` as any database stores it: lone surrogates and NUL escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def records_persist(*, payloads: list[Payload]) -> list[Payload]:
    """Store the records not stored yet, and announce them; returns the ones stored now.

    A re-delivered batch (a flusher died after its commit, before its ack) finds its
    records stored and does nothing. `records_stored` receivers run inside the same
    transaction, so whatever they derive (rollups, ledger entries) counts each record
    exactly once; anything they do outside the database belongs in `on_commit`.
    """
    for attempt in range(PERSIST_ATTEMPTS):
        try:
            with transaction.atomic():
                fresh = _not_stored(payloads)
                _insert(fresh)
                if fresh:
                    records_stored.send(sender=RequestRecord, payloads=fresh)
            return fresh
        except IntegrityError:
            # Another flusher stored some of these between our check and our insert
            # (it took over a batch it thought abandoned). Check again.
            if attempt == PERSIST_ATTEMPTS - 1:
                raise
    return []


def _not_stored(payloads: list[Payload]) -> list[Payload]:
    ids = [p["id"] for p in payloads]
    stored = {str(i) for i in RequestRecord.objects.filter(id__in=ids).values_list("id", flat=True)}
    unique = {p["id"]: p for p in payloads if p["id"] not in stored}
    return list(unique.values())


def _insert(payloads: list[Payload]) -> None:
    existing = _existing_ids(payloads)
    records = [_record_row(p, existing) for p in payloads]
    attempts = [_attempt_row(p["id"], i, a, existing) for p in payloads for i, a in enumerate(p["attempts"])]
    # COPY on PostgreSQL: the rows are new (checked above), and binding them one value at a
    # time was most of the flusher's CPU.
    bulk_insert(RequestRecord, records)
    bulk_insert(RequestAttempt, attempts)
    bulk_insert(RequestText, [_text_row(p, existing) for p in payloads if p.get("text")])
    ledger_append(lines=ledger_lines(payloads))


def _existing_ids(payloads: Iterable[Payload]) -> dict[str, set[int]]:
    """Foreign keys that still exist: a key or policy deleted meanwhile becomes NULL."""
    payloads = list(payloads)
    endpoint_ids = {a["endpoint_id"] for p in payloads for a in p["attempts"]}
    return {
        "api_key": set(ApiKey.objects.filter(id__in={p["api_key_id"] for p in payloads}).values_list("id", flat=True)),
        "policy": set(Policy.objects.filter(id__in={p["policy_id"] for p in payloads}).values_list("id", flat=True)),
        "endpoint": set(ModelEndpoint.objects.filter(id__in=endpoint_ids).values_list("id", flat=True)),
    }


def _record_row(p: Payload, existing: dict[str, set[int]]) -> RequestRecord:
    fields = {k: v for k, v in p.items() if k in RECORD_FIELDS}
    return RequestRecord(
        **fields,
        created=datetime.fromisoformat(p["created"]),
        cost=Decimal(p["cost"]),
        baseline_cost=Decimal(p.get("baseline_cost", "0")),
        cost_avoided=Decimal(p.get("cost_avoided", "0")),
        api_key_id=p["api_key_id"] if p["api_key_id"] in existing["api_key"] else None,
        policy_id=p["policy_id"] if p["policy_id"] in existing["policy"] else None,
    )


def _text_row(p: Payload, existing: dict[str, set[int]]) -> RequestText:
    text = p["text"]
    assert text is not None  # only payloads with text are passed
    return RequestText(
        record_id=p["id"],
        created=datetime.fromisoformat(p["created"]),
        policy_ref=p["policy_id"] if p["policy_id"] in existing["policy"] else None,
        prompt=text["prompt"],
        answers=text["answers"],
    )


def _attempt_row(record_id: str, position: int, a: AttemptPayload, existing: dict[str, set[int]]) -> RequestAttempt:
    fields = {k: v for k, v in a.items() if k in ATTEMPT_FIELDS}
    return RequestAttempt(
        **fields,
        record_id=record_id,
        position=position,
        cost=Decimal(a["cost"]),
        endpoint_id=a["endpoint_id"] if a["endpoint_id"] in existing["endpoint"] else None,
    )
