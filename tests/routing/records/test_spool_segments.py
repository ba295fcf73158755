"""The spool's segment files: one open segment per writer, whole segments claimed, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Sum

from billing.models import LedgerEntry
from routing.models import RequestAttempt, RequestRecord
from routing.records import buffers, flush, recorder
from routing.records.buffers import SpoolBuffer
from routing.records.signals import records_stored
from tests.conftest import flush_records, subprocess_env
from tests.routing.records.test_recorder import payload

ROOT = Path(__file__).resolve().parents[3]
LONG = 3600.0  # a segment age or claim timeout no test reaches


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def announced() -> Iterator[list[str]]:
    """Every id `records_stored` announced in this process."""
    ids: list[str] = []

    def on_stored(sender: type, payloads: list[dict[str, Any]], **kwargs: Any) -> None:
        ids.extend(p["id"] for p in payloads)

    records_stored.connect(on_stored, dispatch_uid="test_spool_segments_announced")
    yield ids
    records_stored.disconnect(dispatch_uid="test_spool_segments_announced")


def append(buffer: SpoolBuffer, *payloads: dict[str, Any]) -> None:
    async def append_all() -> None:
        for p in payloads:
            await buffer.append(p)

    asyncio.run(append_all())


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "n": i} for i in range(n)]


def segments(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith((".open", ".jsonl", ".json")))


def suffixes(directory: Path) -> list[str]:
    return [n.rsplit(".", 1)[1] for n in segments(directory)]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def start_writer(spool: Path, count: int, **options: Any) -> subprocess.Popen[str]:
    """`tests.routing.records.spool_writer` in its own process; its stdout lists the ids it appended."""
    cmd = [sys.executable, "-m", "tests.routing.records.spool_writer", "--spool", str(spool), "--count", str(count)]
    for name, value in options.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cascadeops.settings", "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def template_file(context: Any, tmp_path: Path) -> Path:
    """A real record payload for the writer process to copy, so the flusher can store the copies."""
    path = tmp_path / "template.json"
    path.write_text(json.dumps(payload(context)))
    return path


def appended_ids(output: str) -> list[str]:
    """The ids a writer printed: each one's append had returned, as before an answer is sent."""
    return [line for line in output.splitlines() if len(line) == 36]


def claim_while_writing(spool: Path, writer: subprocess.Popen[str], flushers: int) -> tuple[list[str], list[Any]]:
    """Claim and acknowledge with `flushers` threads, each its own buffer, while `writer` appends.

    Returns the ids the writer appended and the payloads the flushers took, once the
    writer has exited and a claim finds nothing left.
    """
    taken: list[Any] = []
    written = threading.Event()

    def flush() -> None:
        buffer = SpoolBuffer(spool, claim_timeout_s=LONG, segment_s=LONG)
        while True:
            finished = written.is_set()
            batch = buffer.claim(limit=5)
            taken.extend(c.payload for c in batch)
            buffer.ack([c.handle for c in batch])
            if not batch and finished:
                return

    threads = [threading.Thread(target=flush) for _ in range(flushers)]
    for thread in threads:
        thread.start()
    output, _ = writer.communicate(timeout=120)
    written.set()
    for thread in threads:
        thread.join(timeout=120)
    return appended_ids(output), taken


def test_records_are_claimed_oldest_first_and_acknowledged_away(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=LONG)
    written = records(3)
    append(buffer, *written)
    assert suffixes(spool_dir) == ["open"]  # one segment, still open
    assert buffer.depth() == 3

    claimed = buffer.claim(limit=10)

    assert [c.payload for c in claimed] == written
    assert segments(spool_dir) == [] and suffixes(buffer.claimed) == ["jsonl"]
    assert buffer.depth() == 3  # claimed is not stored yet
    buffer.ack([c.handle for c in claimed])
    assert segments(buffer.claimed) == [] and buffer.depth() == 0
    assert buffer.claim(limit=10) == []


def test_a_claim_takes_whole_segments_until_it_has_the_limit(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=LONG)
    first, second, third = records(3), records(3), records(3)
    for batch in (first, second, third):
        append(buffer, *batch)
        buffer.writer.close_segment()  # as if it had aged

    assert [c.payload for c in buffer.claim(limit=4)] == first + second
    assert [c.payload for c in buffer.claim(limit=4)] == third


def test_a_segment_is_closed_on_the_first_append_after_it_aged(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=0.05)
    a, b, c = records(3)
    append(buffer, a, b)
    assert suffixes(spool_dir) == ["open"]

    time.sleep(0.06)
    append(buffer, c)

    closed, still_open = segments(spool_dir)
    assert closed.endswith(".jsonl") and still_open.endswith(".open")
    assert lines_of(spool_dir / closed) == [a, b]
    assert lines_of(spool_dir / still_open) == [c]


def test_an_idle_writers_segment_is_closed_by_a_timer_on_its_event_loop(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=0.05)

    async def append_then_idle() -> list[str]:
        await buffer.append(records(1)[0])
        assert suffixes(spool_dir) == ["open"]
        await asyncio.sleep(0.2)  # no append comes: only the timer can close it
        return suffixes(spool_dir)

    assert asyncio.run(append_then_idle()) == ["jsonl"]


def test_a_segment_whose_event_loop_ended_is_closed_when_the_process_opens_another(tmp_path):
    idle = SpoolBuffer(tmp_path / "idle", claim_timeout_s=LONG, segment_s=0.05)
    busy = SpoolBuffer(tmp_path / "busy", claim_timeout_s=LONG, segment_s=0.05)
    append(idle, *records(1))  # its loop, and the loop's timer, end here
    time.sleep(0.06)

    append(busy, *records(1))

    assert suffixes(tmp_path / "idle") == ["jsonl"]


def test_a_cleanly_stopped_writer_leaves_no_open_segment(spool_dir):
    writer = start_writer(spool_dir, 20, segment_seconds=LONG)
    output, _ = writer.communicate(timeout=60)

    assert writer.returncode == 0
    [segment] = segments(spool_dir)
    assert segment.endswith(".jsonl")
    assert [p["id"] for p in lines_of(spool_dir / segment)] == appended_ids(output)


@pytest.mark.slow
def test_a_live_writers_open_segment_is_left_alone_and_a_killed_ones_is_stored_exactly_once(
    context, tmp_path, announced
):
    spool = settings.CASCADEOPS_RECORD_SPOOL_DIR
    writer = start_writer(spool, 30, template=template_file(context, tmp_path), segment_seconds=LONG, then="wait")
    try:
        ids = [writer.stdout.readline().strip() for _ in range(30)]
        assert writer.stdout.readline().strip() == "done"
        assert flush_records() == 0  # its writer holds it open: not claimable yet
        assert buffers.queue_depth() == 30
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()

    assert flush_records() == 30
    assert sorted(announced) == sorted(ids)  # stored and announced once each
    assert set(RequestRecord.objects.values_list("id", flat=True)) == {uuid.UUID(i) for i in ids}
    assert RequestAttempt.objects.count() == 60
    assert flush_records() == 0 and buffers.queue_depth() == 0


def test_a_writer_killed_while_appending_loses_none_of_the_records_it_had_answered(context, tmp_path, announced):
    spool = settings.CASCADEOPS_RECORD_SPOOL_DIR
    writer = start_writer(spool, 1_000_000, template=template_file(context, tmp_path), segment_seconds=0.01)
    answered = [writer.stdout.readline().strip() for _ in range(400)]
    writer.send_signal(signal.SIGKILL)
    answered += appended_ids(writer.communicate()[0])  # printed before the kill

    flush_records()

    stored = {str(i) for i in RequestRecord.objects.values_list("id", flat=True)}
    assert set(answered) <= stored
    assert sorted(announced) == sorted(stored)  # no record announced twice
    assert RequestAttempt.objects.count() == 2 * len(stored)
    assert buffers.queue_depth() == 0


def test_concurrent_flushers_take_every_record_exactly_once(spool_dir):
    writer = start_writer(spool_dir, 1_500, segment_seconds=0.005)

    appended, taken = claim_while_writing(spool_dir, writer, flushers=3)

    assert len(appended) == 1_500
    assert Counter(p["id"] for p in taken) == Counter(appended)


def test_a_reader_never_sees_a_partial_line(spool_dir):
    # Records larger than a page, written as fast as they go, in segments closed every few ms.
    writer = start_writer(spool_dir, 150, segment_seconds=0.002, pad=131_072)

    appended, taken = claim_while_writing(spool_dir, writer, flushers=2)

    assert not (spool_dir / "dead").exists()  # nothing undecodable was ever read
    assert sorted(p["id"] for p in taken) == sorted(appended)
    assert all(len(p["pad"]) == 131_072 for p in taken)


@pytest.mark.django_db(transaction=True)
def test_two_flusher_processes_store_every_record_once(context, tmp_path):
    spool = settings.CASCADEOPS_RECORD_SPOOL_DIR
    writer = start_writer(spool, 400, template=template_file(context, tmp_path), segment_seconds=0.02)
    cmd = [sys.executable, "manage.py", "run_recorder", "--batch", "20", "--interval", "0.02"]
    flushers = [subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env()) for _ in range(2)]
    try:
        ids = appended_ids(writer.communicate(timeout=120)[0])
        deadline = time.monotonic() + 120
        while RequestRecord.objects.count() < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for flusher in flushers:
            flusher.terminate()
            flusher.wait(timeout=30)

    assert set(RequestRecord.objects.values_list("id", flat=True)) == {uuid.UUID(i) for i in ids}
    assert RequestAttempt.objects.count() == 2 * len(ids)
    assert LedgerEntry.objects.aggregate(n=Sum("requests"))["n"] == len(ids)  # each announced once


def test_a_claim_a_dead_flusher_never_acknowledged_is_taken_over_after_the_timeout(spool_dir):
    dead, alive = (SpoolBuffer(spool_dir, claim_timeout_s=0.2, segment_s=LONG) for _ in range(2))
    written = records(3)
    append(dead, *written)
    assert len(dead.claim(limit=10)) == 3  # then the flusher dies: no ack

    assert alive.claim(limit=10) == []
    time.sleep(0.3)
    claimed = alive.claim(limit=10)

    assert [c.payload for c in claimed] == written
    alive.ack([c.handle for c in claimed])
    assert alive.depth() == 0


def test_a_segment_acknowledged_in_part_stays_claimed(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=LONG)
    append(buffer, *records(3))
    claimed = buffer.claim(limit=10)

    buffer.ack([c.handle for c in claimed[:2]])
    assert suffixes(buffer.claimed) == ["jsonl"]

    buffer.ack([c.handle for c in claimed])
    assert segments(buffer.claimed) == []


def test_one_refused_record_is_dead_lettered_and_the_rest_of_its_segment_stored(context, settings):
    settings.CASCADEOPS_RECORD_SEGMENT_SECONDS = LONG
    spool = recorder.spool_buffer()
    good, bad, also_good = payload(context), payload(context), payload(context)
    bad["input_tokens"] = -1  # the database refuses it (a CHECK constraint)
    append(spool, good, bad, also_good)
    assert suffixes(spool.pending) == ["open"]  # all three in one segment

    assert flush.flush_buffer(spool, limit=100) == 3

    assert set(RequestRecord.objects.values_list("id", flat=True)) == {
        uuid.UUID(good["id"]),
        uuid.UUID(also_good["id"]),
    }
    [letter] = sorted(spool.dead.glob("*.json"))
    assert json.loads(letter.read_bytes()) == bad
    assert letter.with_name(f"{letter.name}.error").read_text().startswith("IntegrityError")
    assert spool.depth() == 0


def test_a_torn_last_line_is_set_aside_and_the_rest_of_the_segment_claimed(spool_dir, caplog):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=LONG)
    whole = records(2)
    torn = json.dumps(records(1)[0]).encode()[:20]
    # What a writer killed in the middle of its last write leaves: no lock, no newline at the end.
    (spool_dir / "00000000000000000001-elsewhere-1.open").write_bytes(
        b"".join(json.dumps(p).encode() + b"\n" for p in whole) + torn
    )

    with caplog.at_level(logging.ERROR, logger="routing.records.recorder"):
        claimed = buffer.claim(limit=10)

    assert [c.payload for c in claimed] == whole
    [kept] = list((spool_dir / "dead").glob("*.line"))
    assert kept.read_bytes() == torn
    assert "is not a record" in caplog.text
    buffer.ack([c.handle for c in claimed])
    assert buffer.depth() == 0


def test_a_spool_of_one_file_per_record_from_before_segments_is_drained(spool_dir):
    buffer = SpoolBuffer(spool_dir, claim_timeout_s=LONG, segment_s=LONG)
    old = records(2)
    for i, p in enumerate(old):
        (spool_dir / f"{i:020d}-{p['id']}.json").write_bytes(json.dumps(p).encode())

    claimed = buffer.claim(limit=10)

    assert [c.payload for c in claimed] == old
    buffer.ack([c.handle for c in claimed])
    assert buffer.depth() == 0


def test_the_same_record_twice_in_one_batch_is_stored_once(context, announced):
    p = payload(context)

    assert flush.records_persist(payloads=[p, p]) == [p]

    assert RequestRecord.objects.count() == 1
    assert RequestAttempt.objects.count() == 2
    assert announced == [p["id"]]
