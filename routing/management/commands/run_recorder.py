from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.recorder import flush_pending


class Command(BaseCommand):
    help = "Flush request records from the durable buffer into the database, continuously."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds to wait when the buffer is empty.")
        parser.add_argument("--batch", type=int, default=5_000)

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True  # finish the batch in hand, then leave

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            if flush_pending(limit=options["batch"]) == 0:
                time.sleep(options["interval"])
