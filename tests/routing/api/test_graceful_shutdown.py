"""SIGTERM to a live gateway: requests in flight are answered, and their records are stored.

Real processes: `manage.py serve` (uvicorn, a Celery worker and beat) or uvicorn alone,
in front of the local upstream, whose `slow-<ms>` and `hang` models keep a request in
flight while the signal arrives.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.net import free_port, wait_until_up
from testing.upstream import running_upstream
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[3]
STARTUP_S = 60.0

pytestmark = pytest.mark.slow


def wait_for(condition, what: str, within_s: float = STARTUP_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.05)


class InFlight(threading.Thread):
    """One chat completion sent from a thread; `outcome` is the response or the error."""

    def __init__(self, url: str, key: str, model: str) -> None:
        super().__init__(daemon=True)
        self.args_ = (url, key, model)
        self.outcome: httpx.Response | Exception | None = None

    def run(self) -> None:
        url, key, model = self.args_
        try:
            self.outcome = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "Take your time."}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
        except Exception as exc:
            self.outcome = exc


def stopped(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status; a process that will not stop fails the test."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.mark.django_db(transaction=True)
def test_serve_answers_the_request_in_flight_on_sigterm_stores_its_record_and_exits_0(tmp_path):
    with running_upstream() as upstream:
        endpoint = openai_endpoint("shutdown-slow", upstream.base_url, "slow-2500", read_timeout_s=30.0)
        _, key = make_key(make_policy("shutdown", [(endpoint, 0.0)]))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            # A metrics directory of its own: serve empties it when it starts.
            env=subprocess_env(CASCADEOPS_SHUTDOWN_GRACE_SECONDS="30", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)),
        )
        try:
            wait_until_up(f"{url}/v1/models", STARTUP_S)
            request = InFlight(url, key, "shutdown")
            request.start()
            wait_for(lambda: upstream.calls["slow-2500"] == 1, "the request to reach the upstream")

            serve.send_signal(signal.SIGTERM)
            request.join(timeout=120)
            status = serve.wait(timeout=120)
        finally:
            stopped(serve)

    response = request.outcome
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "The answer is 42."
    assert status == 0
    # Stored by serve's final flush (or by beat's before it): nobody flushes in this test.
    record = RequestRecord.objects.get(id=response.headers["x-request-id"])
    assert record.status == "answered"


@pytest.mark.django_db(transaction=True)
def test_a_request_past_the_grace_period_is_cancelled_and_recorded_as_cancelled():
    with running_upstream() as upstream:
        endpoint = openai_endpoint("shutdown-hang", upstream.base_url, "hang", read_timeout_s=60.0)
        _, key = make_key(make_policy("shutdown-hang", [(endpoint, 0.0)]))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(port),
             "--no-access-log", "--lifespan", "on", "--log-level", "warning", "--timeout-graceful-shutdown", "1"],
            cwd=ROOT, env=subprocess_env(),
        )  # fmt: skip
        try:
            wait_until_up(f"{url}/v1/models", STARTUP_S)
            request = InFlight(url, key, "shutdown-hang")
            request.start()
            wait_for(lambda: upstream.calls["hang"] == 1, "the request to reach the upstream")
        finally:
            stopped(gateway)
        request.join(timeout=60)

    # No answer came (uvicorn sends a bare 500 for a request it cancels): the gateway gave
    # up on it at the grace period, a minute before the tier's read timeout.
    outcome = request.outcome
    assert isinstance(outcome, httpx.HTTPError) or outcome.status_code == 500, outcome
    call_command("run_recorder", "--drain")
    record = RequestRecord.objects.get(policy_name="shutdown-hang")
    assert record.status == "cancelled"
