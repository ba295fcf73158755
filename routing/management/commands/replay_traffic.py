"""Send the demo data set's prompts through the routing API, as an app would."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.demo import credentials_path
from routing.providers.local import replay_prompts


class Command(BaseCommand):
    help = "Replay the demo prompts against a running gateway at a given rate, and summarise the routing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"))
        parser.add_argument("--key", default=os.environ.get("OPENAI_API_KEY", ""), help="Default: the demo key.")
        parser.add_argument("--model", default="", help="Policy name; default: the key's policy.")
        parser.add_argument("--rate", type=float, default=5.0, help="Requests per second.")
        parser.add_argument("--count", type=int, default=50)
        parser.add_argument("--concurrency", type=int, default=8)

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["key"] or _demo_key()
        prompts = replay_prompts()
        url = options["url"].rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(headers=headers, timeout=120) as client, ThreadPoolExecutor(options["concurrency"]) as pool:
            futures = []
            started = time.monotonic()
            for i in range(options["count"]):
                # Pace by start time, so a slow answer does not slow the offered load.
                time.sleep(max(0.0, started + i / options["rate"] - time.monotonic()))
                body = {"model": options["model"], "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]}
                futures.append(pool.submit(client.post, url, json=body))
            self.summarise(futures)

    def summarise(self, futures: list[Future[httpx.Response]]) -> None:
        statuses: Counter[int] = Counter()
        models: Counter[str] = Counter()
        escalated = 0
        cost = Decimal(0)
        for future in futures:
            response = future.result()
            statuses[response.status_code] += 1
            if response.status_code == 200:
                models[response.headers["x-cascadeops-model"]] += 1
                escalated += response.headers["x-cascadeops-escalated"] == "true"
                cost += Decimal(response.headers["x-cascadeops-cost-usd"])
        answered = statuses[200]
        self.stdout.write(f"sent {len(futures)}, status codes {dict(statuses)}")
        self.stdout.write(f"answered by: {dict(models)}; escalated {escalated} of {answered}")
        self.stdout.write(f"total cost ${cost:.6f}")


def _demo_key() -> str:
    if not credentials_path().exists():
        raise CommandError("No --key given and no demo key found: run `make run` (or `manage.py seed_demo`) first.")
    return str(json.loads(credentials_path().read_text())["api_key"])
