"""Durable record buffers: spool segments on disk (embedded) and a Redis stream (production). See docs/records.md."""

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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from django.conf import settings

from common import redis as shared_redis
from routing.records.payload import RecordPayload as Payload

logger = logging.getLogger(__name__)


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


_writers_lock = threading.Lock()
_writers: dict[Path, SegmentWriter] = {}


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

    def append_queued(self, pipe: Any, payload: Payload) -> None:
        """`append` queued on `pipe`, a pipeline of this event loop's client."""
        pipe.xadd(self.stream, {"p": json.dumps(payload)})

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


def queue_depth() -> int:
    """Records made durable and not stored yet: stream entries not acknowledged, spool records."""
    depth = spool_buffer().depth()
    if settings.REDIS_URL:
        depth += int(shared_redis.sync_client().xlen(settings.CASCADEOPS_RECORD_STREAM))
    return depth
