"""Request records, off the answer path and never lost.

The hot path appends one JSON payload per request to a durable buffer before it answers (a
Redis stream in production, spool segments in embedded mode and as overflow); a flusher
moves batches into the database. A crashed flusher's batch goes to the next one and the
insert is idempotent, so a record may be delayed but is stored exactly once. See docs/records.md.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, cast

from django.conf import settings
from django.db import DataError, IntegrityError, transaction

from billing.ledger.services import ledger_append
from common import redis as shared_redis
from routing import metrics
from routing.config.snapshots import KeyInfo
from routing.engine.costing import baseline_cost
from routing.engine.types import CascadeResult, ChatRequest, PolicySnapshot
from routing.limits import ratelimit
from routing.models import ApiKey, ModelEndpoint, Policy, RequestAttempt, RequestRecord
from routing.records.ledger import ledger_lines
from routing.records.payload import AttemptPayload
from routing.records.payload import RecordPayload as Payload
from routing.records.sampling import sample_payload
from routing.records.signals import records_stored

logger = logging.getLogger(__name__)

PERSIST_ATTEMPTS = 3
# Payload keys copied to columns as they are (money, times and foreign keys are converted).
RECORD_FIELDS = frozenset(
    {"id", "api_key_prefix", "team", "app", "end_user", "policy_name", "policy_version", "task_category",
     "status", "final_tier", "final_model", "escalations", "escalated", "input_tokens", "output_tokens",
     "latency_ms", "score", "quality_label", "error", "metadata", "cache", "streamed"}
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

    def dead_letter(self, refused: list[tuple[Claimed, str]]) -> None: ...


def record_payload(
    *,
    request_id: uuid.UUID,
    created: datetime,
    key: KeyInfo,
    policy: PolicySnapshot,
    chat: ChatRequest,
    result: CascadeResult,
    status: str | None = None,
    streamed: bool = False,
) -> Payload:
    """Everything the record and its attempts need, as JSON-safe values (money as strings).

    `status` overrides the one the result implies (a cancelled request's); `streamed`
    says the answer went out as server-sent events.
    """
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
        "status": status or ("answered" if result.answered else "failed"),
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
        "streamed": streamed,
        # A cache hit: "exact" or "semantic", and what the cached answer cost (routing.cache.exact).
        "cache": "",
        "cost_avoided": "0",
        # The prompt and answer text, for the requests the policy samples (routing.quality.samples).
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


# Spool segment names: `<start ns>-<host>-<pid>` and a suffix saying what state it is in.
SEGMENT_OPEN = ".open"  # a writer may still append to it
SEGMENT_CLOSED = ".jsonl"  # complete; a flusher may claim it
SEGMENT_LEGACY = ".json"  # one record per file, as spools were before segments: drained the same way
HOSTNAME = socket.gethostname()


class SegmentWriter:
    """This process's open segment in one spool directory: one `os.write` per record.

    A segment is created under a hidden name, locked (`flock`), and only then renamed to
    `.open`: a flusher that finds an `.open` segment unlocked knows its writer is gone,
    however it died (the kernel drops the lock with the process). A record is written
    only into a segment younger than the segment age, so a segment older than that is
    never written to again; that is what lets a flusher take one whose writer hangs.
    The lock orders the event loop's appends with a thread of the same process closing
    the segment (a flusher in the same process, a timer of another loop).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.name = ""
        self.opened = 0.0
        self.max_age_s = 0.0

    def write(self, line: bytes, max_age_s: float) -> str | None:
        """Append one complete line; returns the name of the segment it opened for it, if any."""
        with self.lock:
            if self.fd is not None and time.monotonic() - self.opened >= self.max_age_s:
                self._close()
            opened = None
            if self.fd is None:
                opened = self._open(max_age_s)
            try:
                _write_all(self.fd, line)
            except OSError:
                # Disk full, say: a torn line must stay its segment's last one.
                self._close()
                raise
        return opened

    def close_segment(self, name: str | None = None) -> None:
        """Close the open segment (only if it is still `name`, when given)."""
        with self.lock:
            if self.fd is not None and name in (None, self.name):
                self._close()

    def close_segment_if_expired(self) -> None:
        with self.lock:
            if self.fd is not None and time.monotonic() - self.opened >= self.max_age_s:
                self._close()

    def forget(self) -> None:
        """In a forked child: drop the parent's segment without closing it for the parent."""
        if self.fd is not None:
            os.close(self.fd)  # the parent's descriptor keeps the segment and its lock
        self.fd, self.lock = None, threading.Lock()

    def _open(self, max_age_s: float) -> str:
        name = f"{time.time_ns():020d}-{HOSTNAME}-{os.getpid()}"
        hidden = self.directory / f".{name}.new"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(hidden, self.directory / f"{name}{SEGMENT_OPEN}")
        self.fd, self.name, self.opened, self.max_age_s = fd, name, time.monotonic(), max_age_s
        return name

    def _close(self) -> None:
        assert self.fd is not None
        try:
            os.rename(self.directory / f"{self.name}{SEGMENT_OPEN}", self.directory / f"{self.name}{SEGMENT_CLOSED}")
        except FileNotFoundError:
            pass  # a flusher took it as abandoned, or the directory is gone
        finally:
            os.close(self.fd)
            self.fd = None


def _write_all(fd: int | None, data: bytes) -> None:
    assert fd is not None
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_writers: dict[Path, SegmentWriter] = {}
_writers_lock = threading.Lock()


def segment_writer(directory: Path) -> SegmentWriter:
    """The one writer of this process for `directory`, whichever buffer object asks."""
    with _writers_lock:
        return _writers.setdefault(directory, SegmentWriter(directory))


def close_expired_segments() -> None:
    """Close this process's segments past their age whose event loop will not do it.

    The timer that closes an idle segment dies with its event loop (`asyncio.run`,
    `async_to_sync`); opening a segment anywhere in the process closes those.
    """
    for writer in list(_writers.values()):
        writer.close_segment_if_expired()


@atexit.register
def _close_all_segments() -> None:
    # A cleanly stopped worker leaves no open segment behind: the last flush sees them all.
    for writer in list(_writers.values()):
        writer.close_segment()


def _forget_inherited_segments() -> None:
    global _writers_lock
    _writers_lock = threading.Lock()
    for writer in _writers.values():
        writer.forget()


os.register_at_fork(after_in_child=_forget_inherited_segments)


class SpoolBuffer:
    """A directory of append-only segment files, one JSON line per record (embedded mode).

    Each writing process appends to its own open segment (`SegmentWriter`) and closes it
    (renames it `.jsonl`) once it is `segment_s` old: on its next append, by a timer on
    its event loop (so an idle writer's last records show up too), when a flusher in the
    same process claims, and at exit. A flusher claims whole segments, closed ones and
    open ones whose writer is gone, by renaming them into `claimed/`; rename is atomic,
    so two flushers never take the same segment. A claim not acknowledged within the
    claim timeout is given back. Segments survive a killed process (they are in the OS
    page cache); they are not fsynced, so embedded mode can lose the last records on a
    power cut, which production's Redis stream with AOF does not.
    """

    def __init__(self, directory: Path, claim_timeout_s: float, segment_s: float = 0.5) -> None:
        self.pending = Path(directory)
        self.claimed = self.pending / "claimed"
        self.dead = self.pending / "dead"
        self.claim_timeout_s = claim_timeout_s
        self.segment_s = segment_s
        self.claimed.mkdir(parents=True, exist_ok=True)
        self.writer = segment_writer(self.pending)

    async def append(self, payload: Payload) -> None:
        # One small local write: cheaper than a thread hop, so it stays on the event loop.
        # json.dumps escapes newlines, so the record is exactly one line.
        opened = self.writer.write(json.dumps(payload).encode() + b"\n", self.segment_s)
        if opened:
            asyncio.get_running_loop().call_later(self.segment_s, self.writer.close_segment, opened)
            close_expired_segments()

    def claim(self, limit: int) -> list[Claimed]:
        """Whole segments, oldest first, until at least `limit` records (or none are left).

        A handle is `<segment>:<line>/<records in the segment>`.
        """
        self.writer.close_segment()  # this process's own records are claimable at once
        self._requeue_abandoned()
        claimed: list[Claimed] = []
        for name in self._claimable():
            if len(claimed) >= limit:
                break
            if segment := self._take(name):
                claimed += self._read(segment)
        return claimed

    def ack(self, handles: list[str]) -> None:
        """Delete the claimed segments every record of which is acknowledged.

        A segment acknowledged only in part stays claimed and comes back after the claim
        timeout; the idempotent insert makes that second delivery harmless.
        """
        acked = Counter(_segment_of(handle) for handle in set(handles))
        for (segment, size), count in acked.items():
            if count == size:
                (self.claimed / segment).unlink(missing_ok=True)

    def dead_letter(self, refused: list[tuple[Claimed, str]]) -> None:
        """Copy records the database refuses to `dead/`, each with a `.error` file saying why.

        Their segment goes when the flusher acknowledges it; a flusher that dies before
        that refuses them again and writes the same files again.
        """
        self.dead.mkdir(exist_ok=True)
        for item, error in refused:
            name = f"{_dead_name(item.handle)}.json"
            (self.dead / f"{name}.error").write_text(error + "\n")
            (self.dead / name).write_bytes(json.dumps(item.payload).encode())

    def depth(self) -> int:
        """Records here not acknowledged yet: the lines of every segment, open, closed or claimed."""
        return sum(_records_in(d / n) for d in (self.pending, self.claimed) for n in _segments(os.listdir(d)))

    def _claimable(self) -> Iterator[str]:
        for name in sorted(_segments(os.listdir(self.pending))):
            if not name.endswith(SEGMENT_OPEN) or self._writer_gone(name):
                yield name

    def _writer_gone(self, name: str) -> bool:
        """Whether nobody will append to this open segment: its lock is free, or it is stale.

        Stale (untouched for the claim timeout) covers a writer that hangs, or one on
        another host whose lock this kernel cannot see.
        """
        try:
            fd = os.open(self.pending / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # closed meanwhile: the next claim sees it as `.jsonl`
        try:
            if os.fstat(fd).st_mtime < time.time() - self.claim_timeout_s:
                return True
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def _take(self, name: str) -> Path | None:
        """Move a segment into `claimed/`, or None if another flusher took it first."""
        kept = name if name.endswith(SEGMENT_LEGACY) else name.rsplit(".", 1)[0] + SEGMENT_CLOSED
        source, target = self.pending / name, self.claimed / kept
        try:
            # The claim's age starts now, not when the segment was written; touch it
            # before the move so no other flusher ever sees an old claimed segment.
            os.utime(source)
            os.replace(source, target)
        except FileNotFoundError:
            return None
        return target

    def _read(self, segment: Path) -> list[Claimed]:
        records: list[tuple[int, Payload]] = []
        lines = segment.read_bytes().split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the last record's newline
        for index, line in enumerate(lines):
            try:
                payload = json.loads(line)
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
                records.append((index, cast(Payload, payload)))  # as `record_payload` wrote it
            except ValueError as exc:
                self._set_aside(segment.name, index, line, exc)
        if not records:
            segment.unlink(missing_ok=True)  # nothing to acknowledge
        return [Claimed(handle=f"{segment.name}:{i}/{len(records)}", payload=p) for i, p in records]

    def _set_aside(self, segment: str, index: int, line: bytes, error: Exception) -> None:
        """Keep a line that is no record in `dead/` (a writer killed mid-write leaves one last)."""
        name = f"{_dead_name(f'{segment}:{index}')}.line"
        logger.error("Line %d of spool segment %s is not a record (%s); kept in %s", index, segment, error, name)
        self.dead.mkdir(exist_ok=True)
        (self.dead / f"{name}.error").write_text(f"{type(error).__name__}: {error}\n")
        (self.dead / name).write_bytes(line)

    def _requeue_abandoned(self) -> None:
        """Give segments claimed by a flusher that died back to the pending directory."""
        cutoff = time.time() - self.claim_timeout_s
        for name in os.listdir(self.claimed):
            path = self.claimed / name
            try:
                if path.stat().st_mtime < cutoff:
                    os.replace(path, self.pending / name)
            except FileNotFoundError:
                continue


def _segments(names: Iterable[str]) -> Iterator[str]:
    """Segment files among directory entries (hidden ones are being created)."""
    suffixes = (SEGMENT_OPEN, SEGMENT_CLOSED, SEGMENT_LEGACY)
    return (n for n in names if n.endswith(suffixes) and not n.startswith("."))


def _segment_of(handle: str) -> tuple[str, int]:
    segment, _, position = handle.rpartition(":")
    return segment, int(position.partition("/")[2])


def _dead_name(handle: str) -> str:
    segment, _, position = handle.rpartition(":")
    return f"{segment.rsplit('.', 1)[0]}-{position.partition('/')[0]}"


def _records_in(path: Path) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0  # claimed or acknowledged meanwhile
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


class RedisStreamBuffer:
    """A Redis stream read through one consumer group (production).

    Entries a flusher read but did not acknowledge stay in the group's pending list;
    after the claim timeout another flusher takes them over with XAUTOCLAIM.
    """

    GROUP = "flushers"

    def __init__(self, stream: str, claim_timeout_s: float) -> None:
        self.stream = stream
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.host = socket.gethostname()

    def consumer(self) -> str:
        # Read at each claim: a flusher forked from a process that built this buffer is
        # a consumer of its own.
        return f"{self.host}-{os.getpid()}"

    async def append(self, payload: Payload) -> None:
        await shared_redis.async_client().xadd(self.stream, {"p": json.dumps(payload)})

    def claim(self, limit: int) -> list[Claimed]:
        client = shared_redis.sync_client()
        self._ensure_group(client)
        _, stolen, _ = client.xautoclaim(
            self.stream, self.GROUP, self.consumer(), self.claim_timeout_ms, "0-0", count=limit
        )
        entries = list(stolen)
        if len(entries) < limit:
            fresh = client.xreadgroup(self.GROUP, self.consumer(), {self.stream: ">"}, count=limit - len(entries))
            assert isinstance(fresh, list)  # RESP2, the client's protocol: [[stream, entries]]
            entries += fresh[0][1] if fresh else []
        return [Claimed(handle=_text(i), payload=json.loads(f[b"p"])) for i, f in entries if f]

    def ack(self, handles: list[str]) -> None:
        if handles:
            client = shared_redis.sync_client()
            client.xack(self.stream, self.GROUP, *handles)
            client.xdel(self.stream, *handles)

    def dead_letter(self, refused: list[tuple[Claimed, str]]) -> None:
        """Move records the database refuses to the `<stream>:dead` stream, with why, in one step."""
        if not refused:
            return
        pipe = shared_redis.sync_client().pipeline(transaction=True)
        for item, error in refused:
            pipe.xadd(f"{self.stream}:dead", {"p": json.dumps(item.payload), "error": error, "entry": item.handle})
        handles = [item.handle for item, _ in refused]
        pipe.xack(self.stream, self.GROUP, *handles)
        pipe.xdel(self.stream, *handles)
        pipe.execute()

    def _ensure_group(self, client: Any) -> None:
        try:
            client.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def get_buffer() -> RecordBuffer:
    if settings.REDIS_URL:
        return _stream_buffer(settings.CASCADEOPS_RECORD_STREAM, settings.CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS)
    return spool_buffer()


@functools.cache
def _stream_buffer(stream: str, claim_timeout_s: float) -> RedisStreamBuffer:
    return RedisStreamBuffer(stream, claim_timeout_s)


@functools.cache
def _spool_buffer(directory: Path, claim_timeout_s: float, segment_s: float) -> SpoolBuffer:
    return SpoolBuffer(directory, claim_timeout_s, segment_s)


def spool_buffer() -> SpoolBuffer:
    """The spool directory: embedded mode's buffer, and production's overflow."""
    return _spool_buffer(
        settings.CASCADEOPS_RECORD_SPOOL_DIR,
        settings.CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS,
        settings.CASCADEOPS_RECORD_SEGMENT_SECONDS,
    )


def drained_buffers() -> list[RecordBuffer]:
    """Where records wait: the buffer, and in production also the overflow spool."""
    return [get_buffer(), spool_buffer()] if settings.REDIS_URL else [spool_buffer()]


async def enqueue(payload: Payload) -> None:
    """Make the record durable; called by the hot path before it answers.

    Shielded: a client that goes away cancels the task serving it, and neither that nor a
    second cancellation (a server shutting down) may lose the record of what was paid for.
    """
    await asyncio.shield(_make_durable(payload))


async def _make_durable(payload: Payload) -> None:
    """Append the record to the buffer, then count it.

    A record the Redis stream refuses (Redis down, failing over, out of memory) goes to
    the local spool instead, which the flusher drains too: the answer has been paid for,
    so neither may the record be lost nor the answer turned into an error.
    """
    buffer = get_buffer()
    try:
        await buffer.append(payload)
    except Exception:
        if isinstance(buffer, SpoolBuffer):
            raise
        logger.exception("The record stream refused record %s; it waits in the local spool", payload["id"])
        await spool_buffer().append(payload)
    # routing.metrics reads the payload only; its parameter says MutableMapping.
    metrics.record_observed(cast("dict[str, Any]", payload))
    # The record says what every attempt used: the key's token charge is corrected to it.
    await ratelimit.settle_recorded(payload)


def queue_depth() -> int:
    """Records made durable and not stored yet: stream entries not acknowledged, spool records."""
    depth = spool_buffer().depth()
    if settings.REDIS_URL:
        depth += int(shared_redis.sync_client().xlen(settings.CASCADEOPS_RECORD_STREAM))
    return depth


def flush_pending(limit: int = 5_000) -> int:
    """Move up to `limit` buffered records (per buffer) into the database; returns how many it read."""
    return sum(flush_buffer(buffer, limit) for buffer in drained_buffers())


def flush_buffer(buffer: RecordBuffer, limit: int) -> int:
    claimed = buffer.claim(limit)
    if not claimed:
        return 0
    try:
        records_persist(payloads=[c.payload for c in claimed])
    except (DataError, IntegrityError):
        # One record the database refuses (a NUL in its text, a value out of range) must
        # not hold the whole batch back forever: store them one by one instead.
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
    refused = []
    for item in claimed:
        try:
            records_persist(payloads=[item.payload])
        except (DataError, IntegrityError) as exc:
            logger.error("The database refuses request record %s; moved to the dead letter: %s", item.handle, exc)
            refused.append((item, f"{type(exc).__name__}: {exc}"))
    buffer.dead_letter(refused)


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
        cost_avoided=Decimal(p.get("cost_avoided", "0")),
        api_key_id=p["api_key_id"] if p["api_key_id"] in existing["api_key"] else None,
        policy_id=p["policy_id"] if p["policy_id"] in existing["policy"] else None,
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
