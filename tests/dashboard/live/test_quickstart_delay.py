"""How long a routed request takes to reach the live charts in the quickstart configuration.

`make run`'s stack, as it runs it: `manage.py serve` (uvicorn, a Celery worker, beat and the
record flusher) in embedded mode, the demo seeded with its default replay latency, and a
real headless chromium on the dashboard. Each request's delay is from its answer reaching
the client to the page showing it (a MutationObserver's timestamp in the page). The figures
(median and max) are written to var/bench/quickstart-chart-delay.json and printed; the test
asserts that every request reached the page, not how fast: speed is measured, not pinned.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from django.conf import settings as django_settings

from routing.providers.local import replay_prompts
from testing.net import free_port, wait_until_up
from tests.dashboard.live.test_browser import CHROMIUM_ARGS, chromium_path, wait_until

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = Path(django_settings.BASE_DIR)
REQUESTS = 15
# Requests start at varying offsets from the dashboard's tick, so the samples cover its phase.
SPACING_S = (0.9, 1.3, 1.7)
OBSERVE_TILES = """
window.seen = [];
const note = () => {
  const tile = document.querySelector('[data-tile=requests]');
  if (tile) window.seen.push([Date.now(), parseInt(tile.textContent, 10)]);
};
const watched = {childList: true, subtree: true, characterData: true};
new MutationObserver(note).observe(document.getElementById('tiles'), watched);
note();
"""


def quickstart_env(var_dir: Path) -> dict[str, str]:
    """The environment `make run` gives: embedded mode (no DATABASE_URL, no REDIS_URL), its own var/."""
    dropped = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("CASCADEOPS_")}
    return {**env, "DJANGO_SETTINGS_MODULE": "cascadeops.settings", "CASCADEOPS_VAR_DIR": str(var_dir)}


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """`make run`'s steps in a var/ of its own; yields the URL and the demo credentials."""
    chromium_path()  # skip early without a browser
    env = quickstart_env(tmp_path)
    manage = [sys.executable, str(ROOT / "manage.py")]
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"], ["seed_demo"]):
        subprocess.run([*manage, *step], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    serve = subprocess.Popen([*manage, "serve", "--port", str(port)], cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/v1/models", 60)
        yield url, json.loads((tmp_path / "demo-credentials.json").read_text())
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_the_quickstart_charts_follow_requests(quickstart: tuple[str, dict[str, Any]], capsys) -> None:
    url, credentials = quickstart
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1800})
        page.goto(f"{url}/admin/login/?next=/")
        page.fill("#id_username", credentials["username"])
        page.fill("#id_password", credentials["password"])
        page.click("input[type=submit]")
        page.wait_for_url(f"{url}/")
        wait_until(page, "document.getElementById('live-status').dataset.state === 'live'", timeout=15_000)
        page.evaluate(OBSERVE_TILES)
        delays = measure(page, url, credentials["api_key"])
        browser.close()

    figures = {
        "requests": len(delays),
        "median_s": round(statistics.median(delays), 3),
        "max_s": round(max(delays), 3),
        "delays_s": [round(d, 3) for d in delays],
        "configuration": "manage.py serve (embedded mode, as make run starts it), demo replay latency 200 ms",
    }
    out = ROOT / "var" / "bench" / "quickstart-chart-delay.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nquickstart request-to-chart delay: median {figures['median_s']} s, max {figures['max_s']} s ({out})")
    assert len(delays) == REQUESTS


def measure(page: Any, url: str, api_key: str) -> list[float]:
    """Each request's delay, in seconds, from its answer to the page counting it."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0)
    prompts = replay_prompts()
    delays = []
    for n in range(1, REQUESTS + 1):
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": prompts[n]}])
        answered_ms = time.time() * 1000
        wait_until(page, f"window.seen.some(([, count]) => count >= {n})", timeout=30_000)
        shown_ms = page.evaluate(f"window.seen.find(([, count]) => count >= {n})[0]")
        delays.append((shown_ms - answered_ms) / 1000)
        time.sleep(SPACING_S[n % len(SPACING_S)])
    return delays
