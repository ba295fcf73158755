"""Move request records from the durable buffer into the database, continuously.

On SIGTERM or SIGINT it finishes the batch in hand, then drains the buffer for up to
`CASCADEOPS_SHUTDOWN_GRACE_SECONDS` and exits 0; what is left waits for the next flusher.
`--drain` flushes what is there and exits. See docs/records.md.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from routing.records.flush import flush_pending

logger = logging.getLogger(__name__)


def drain(*, batch: int, within_s: float) -> int:
    """Flush until the buffer is empty or `within_s` seconds have passed; returns how many were read."""
    deadline = time.monotonic() + within_s
    total = 0
    while time.monotonic() < deadline:
        flushed = flush_pending(limit=batch)
        if flushed == 0:
            break
        total += flushed
    return total


class Command(BaseCommand):
    help = "Flush request records from the durable buffer into the database, continuously."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval", type=float, default=0.5, help="Seconds to wait after a batch that emptied the buffer."
        )
        parser.add_argument("--batch", type=int, default=5_000)
        parser.add_argument("--drain", action="store_true", help="Flush what is buffered now, then exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        grace = settings.CASCADEOPS_SHUTDOWN_GRACE_SECONDS
        if options["drain"]:
            self.stdout.write(f"{drain(batch=options['batch'], within_s=grace)} records flushed")
            return
        stop_requested = False

        def stop(*_: Any) -> None:
            # Only a flag: Event.set() from a handler can deadlock on the lock that the
            # interrupted Event.wait() holds; the loop sees the flag after its sleep.
            nonlocal stop_requested
            stop_requested = True  # the loop finishes the batch in hand, then drains

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Frozen: what start-up loaded stays alive, and the collector need not scan it again
        # after every batch of payloads.
        gc.freeze()
        while not stop_requested:
            # A batch short of full means the buffer is (nearly) empty: wait, so that the next
            # batch is a large one. A flush costs a dozen statements however few records it
            # carries; flushing each record as it arrives cost more than the records.
            if flush_pending(limit=options["batch"]) < options["batch"]:
                time.sleep(options["interval"])
        flushed = drain(batch=options["batch"], within_s=grace)
        logger.info("Record flusher stopped after flushing %d more records", flushed)
