from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo policy (replayed Mixtral → GPT-4), an admin login and an API key where missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--replay-latency-ms", type=int, default=0, help="Simulated latency of the replay models.")

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = demo_seed(replay_latency_ms=options["replay_latency_ms"])
        self.stdout.write(f"Demo ready: admin login {credentials.username}, API key {credentials.api_key}")
