"""Send the demo data set's prompts through the routing API, as an app would."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.demo import credentials_path
from routing.providers.local import replay_prompts


class Command(BaseCommand):
    help = "Replay the demo prompts against a running gateway at a given rate, and summarise the routing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default=default_url(),
            help="The API base, ending in /v1. Default: OPENAI_BASE_URL, else http://127.0.0.1:$PORT/v1 (PORT: 8000).",
        )
        parser.add_argument("--key", default=os.environ.get("OPENAI_API_KEY", ""), help="Default: the demo key.")
        parser.add_argument("--model", default="", help="Policy name; default: the key's policy.")
        parser.add_argument("--rate", type=float, default=5.0, help="Requests per second.")
        parser.add_argument("--count", type=int, default=50)
        parser.add_argument("--concurrency", type=int, default=8)

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["key"] or _demo_key()
        prompts = replay_prompts()
        url = api_base(options["url"]) + "/chat/completions"
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


def default_url() -> str:
    # `make run` reads PORT too, so the same shell reaches the same server.
    port = os.environ.get("PORT") or "8000"
    return os.environ.get("OPENAI_BASE_URL") or f"http://127.0.0.1:{port}/v1"


def api_base(url: str) -> str:
    """`url` without its trailing slash; an error unless it is an http(s) URL ending in /v1."""
    base = url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"--url must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1; got {url!r}.")
    if not parts.path.endswith("/v1"):
        raise CommandError(
            f"--url must be the API base, ending in /v1 (as OpenAI clients expect), e.g. {base}/v1; got {url!r}."
        )
    return base


def _demo_key() -> str:
    if not credentials_path().exists():
        raise CommandError("No --key given and no demo key found: run `make run` (or `manage.py seed_demo`) first.")
    return str(json.loads(credentials_path().read_text())["api_key"])
