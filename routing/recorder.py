"""Request records, off the answer path and never lost.

The hot path appends one JSON payload per routed request to a durable buffer before it
answers (no database round trip); a flusher moves batches into the database. The buffer
is a Redis stream read through a consumer group in production, and a spool directory in
embedded mode. Both hand a crashed flusher's unacknowledged batch to the next flusher,
and the insert is idempotent (the request id is the primary key), so a record may be
delayed by a crash but is stored exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.services import ledger_append
from cascadeops import redis as shared_redis

from .engine.costing import baseline_cost
from .engine.types import CascadeResult, ChatRequest, PolicySnapshot
from .ledger import ledger_lines
from .models import ApiKey, ModelEndpoint, Policy, RequestAttempt, RequestRecord
from .samples import sample_payload
from .signals import records_stored
from .snapshots import KeyInfo

Payload = dict[str, Any]
PERSIST_ATTEMPTS = 3
# Payload keys copied to columns as they are (money, times and foreign keys are converted).
RECORD_FIELDS = frozenset(
    {"id", "api_key_prefix", "team", "app", "end_user", "policy_name", "policy_version", "task_category",
     "status", "final_tier", "final_model", "escalations", "escalated", "input_tokens", "output_tokens",
     "latency_ms", "score", "quality_label", "error", "metadata"}
)  # fmt: skip
ATTEMPT_FIELDS = frozenset(
    {"tier", "model", "outcome", "input_tokens", "output_tokens", "cached_input_tokens", "price_version",
     "latency_ms", "score", "error", "error_kind", "quality_label"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claimed:
    """A payload a flusher holds until it acknowledges it."""

    handle: str
    payload: Payload


class RecordBuffer(Protocol):
    async def append(self, payload: Payload) -> None: ...

    def claim(self, limit: int) -> list[Claimed]: ...

    def ack(self, handles: list[str]) -> None: ...


def record_payload(
    *,
    request_id: uuid.UUID,
    created: datetime,
    key: KeyInfo,
    policy: PolicySnapshot,
    chat: ChatRequest,
    result: CascadeResult,
) -> Payload:
    """Everything the record and its attempts need, as JSON-safe values (money as strings)."""
    final = result.final
    return {
        "id": str(request_id),
        "created": created.isoformat(),
        "api_key_id": key.id,
        "api_key_prefix": key.prefix,
        "team": key.team,
        "app": key.app,
        "end_user": chat.user,
        "policy_id": policy.id,
        "policy_name": policy.name,
        "policy_version": policy.version,
        "task_category": result.task,
        "status": "answered" if result.answered else "failed",
        "final_tier": final.tier if final else None,
        "final_model": final.model if final else "",
        "escalations": result.escalations,
        "escalated": result.escalated,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cost": str(result.cost),
        "baseline_cost": str(baseline_cost(policy, chat, result)),
        "latency_ms": round(result.latency_ms, 3),
        "score": final.score if final else None,
        "quality_label": final.quality_label if final else None,
        "error": "" if result.answered else "; ".join(f"tier {a.tier}: {a.error}" for a in result.attempts),
        "metadata": dict(chat.metadata),
        # The prompt and answer text, for the requests the policy samples (routing.samples).
        "sample": sample_payload(policy=policy, chat=chat, result=result),
        "attempts": [
            {
                "tier": a.tier,
                "endpoint_id": a.endpoint_id,
                "model": a.model,
                "outcome": str(a.outcome),
                "input_tokens": a.input_tokens,
                "output_tokens": a.output_tokens,
                "cached_input_tokens": a.cached_input_tokens,
                "cost": str(a.cost),
                "price_version": a.price_version,
                "latency_ms": round(a.latency_ms, 3),
                "score": a.score,
                "error": a.error,
                "error_kind": a.error_kind,
                "quality_label": a.quality_label,
            }
            for a in result.attempts
        ],
    }


class SpoolBuffer:
    """A directory of one-file-per-record payloads (embedded mode).

    A file is written under a temporary name and renamed into place, so a reader never
    sees half a record. A flusher claims a file by renaming it into `claimed/`; rename is
    atomic, so two flushers never take the same file. Files survive a killed process
    (they are in the OS page cache); they are not fsynced, so embedded mode can lose the
    last records on a power cut, which production's Redis stream with AOF does not.
    """

    def __init__(self, directory: Path, claim_timeout_s: float) -> None:
        self.pending = Path(directory)
        self.claimed = self.pending / "claimed"
        self.claim_timeout_s = claim_timeout_s
        self.claimed.mkdir(parents=True, exist_ok=True)

    async def append(self, payload: Payload) -> None:
        # A small local write: cheaper than a thread hop, so it stays on the event loop.
        name = f"{time.time_ns():020d}-{payload['id']}.json"
        tmp = self.pending / f".{name}.tmp"
        tmp.write_bytes(json.dumps(payload).encode())
        os.replace(tmp, self.pending / name)

    def claim(self, limit: int) -> list[Claimed]:
        self._requeue_abandoned()
        names = sorted(n for n in os.listdir(self.pending) if n.endswith(".json"))[:limit]
        claimed = []
        for name in names:
            source, target = self.pending / name, self.claimed / name
            try:
                # The claim's age starts now, not when the record was written; touch it
                # before the move so no other flusher ever sees an old claimed file.
                os.utime(source)
                os.replace(source, target)
            except FileNotFoundError:
                continue  # another flusher took it
            claimed.append(Claimed(handle=name, payload=json.loads(target.read_bytes())))
        return claimed

    def ack(self, handles: list[str]) -> None:
        for name in handles:
            (self.claimed / name).unlink(missing_ok=True)

    def _requeue_abandoned(self) -> None:
        """Give files claimed by a flusher that died back to the pending directory."""
        cutoff = time.time() - self.claim_timeout_s
        for name in os.listdir(self.claimed):
            path = self.claimed / name
            try:
                if path.stat().st_mtime < cutoff:
                    os.replace(path, self.pending / name)
            except FileNotFoundError:
                continue


class RedisStreamBuffer:
    """A Redis stream read through one consumer group (production).

    Entries a flusher read but did not acknowledge stay in the group's pending list;
    after the claim timeout another flusher takes them over with XAUTOCLAIM.
    """

    GROUP = "flushers"

    def __init__(self, stream: str, claim_timeout_s: float) -> None:
        self.stream = stream
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    async def append(self, payload: Payload) -> None:
        await shared_redis.async_client().xadd(self.stream, {"p": json.dumps(payload)})

    def claim(self, limit: int) -> list[Claimed]:
        client = shared_redis.sync_client()
        self._ensure_group(client)
        _, stolen, _ = client.xautoclaim(
            self.stream, self.GROUP, self.consumer, self.claim_timeout_ms, "0-0", count=limit
        )
        entries = list(stolen)
        if len(entries) < limit:
            fresh = client.xreadgroup(self.GROUP, self.consumer, {self.stream: ">"}, count=limit - len(entries))
            entries += fresh[0][1] if fresh else []
        return [Claimed(handle=_text(i), payload=json.loads(f[b"p"])) for i, f in entries if f]

    def ack(self, handles: list[str]) -> None:
        if handles:
            client = shared_redis.sync_client()
            client.xack(self.stream, self.GROUP, *handles)
            client.xdel(self.stream, *handles)

    def _ensure_group(self, client: Any) -> None:
        try:
            client.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def get_buffer() -> RecordBuffer:
    timeout = settings.CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS
    if settings.REDIS_URL:
        return RedisStreamBuffer(settings.CASCADEOPS_RECORD_STREAM, timeout)
    return SpoolBuffer(settings.CASCADEOPS_RECORD_SPOOL_DIR, timeout)


async def enqueue(payload: Payload) -> None:
    """Make the record durable; called by the hot path before it answers."""
    await get_buffer().append(payload)


def flush_pending(limit: int = 5_000) -> int:
    """Move up to `limit` buffered records into the database; returns how many it read."""
    buffer = get_buffer()
    claimed = buffer.claim(limit)
    if not claimed:
        return 0
    records_persist(payloads=[c.payload for c in claimed])
    # Acknowledge only after the commit: a crash before this line re-delivers the batch,
    # and the idempotent insert turns the second delivery into a no-op.
    buffer.ack([c.handle for c in claimed])
    return len(claimed)


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
    RequestRecord.objects.bulk_create(records, batch_size=500)
    RequestAttempt.objects.bulk_create(attempts, batch_size=500)
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
        api_key_id=p["api_key_id"] if p["api_key_id"] in existing["api_key"] else None,
        policy_id=p["policy_id"] if p["policy_id"] in existing["policy"] else None,
    )


def _attempt_row(record_id: str, position: int, a: Payload, existing: dict[str, set[int]]) -> RequestAttempt:
    fields = {k: v for k, v in a.items() if k in ATTEMPT_FIELDS}
    return RequestAttempt(
        **fields,
        record_id=record_id,
        position=position,
        cost=Decimal(a["cost"]),
        endpoint_id=a["endpoint_id"] if a["endpoint_id"] in existing["endpoint"] else None,
    )
