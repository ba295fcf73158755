"""A Redis outage mid-traffic: the routing API keeps answering, loses nothing, and recovers.

Real parts: a redis-server this test starts on a port of its own, the gateway (uvicorn) in
production mode against it, the official `openai` client, the local upstream, and the
record flusher (`run_recorder --drain`) as its own process. Redis is stopped mid-traffic
and started again; what each part does meanwhile is in docs/redis-outage.md.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from billing.models import Budget
from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.net import free_port, wait_until_up
from testing.upstream import running_upstream
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[3]
STARTUP_S = 60.0
# The gateway skips Redis this long after a failed connection (REDIS_OUTAGE_COOLDOWN_S): it
# can notice Redis is back only once that has passed, however many requests come meanwhile.
OUTAGE_COOLDOWN_S = 2.0
# How long the test keeps asking before it calls recovery missed: many cool-downs.
RECOVERY_WAIT_S = 15 * OUTAGE_COOLDOWN_S
RECOVERY_PAUSE_S = 0.05

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


class RedisServer:
    """A throwaway redis-server on its own port, with no persistence: a restart loses its data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                subprocess.run(["sleep", "0.05"], check=True)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def drain_records(env: dict[str, str]) -> None:
    """Every buffered record into the database: the stream's and the spool's."""
    subprocess.run([sys.executable, "manage.py", "run_recorder", "--drain"], cwd=ROOT, env=env, check=True)


def ask(client: openai.OpenAI, model: str) -> httpx.Response:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "What is 6 times 7?"}], max_tokens=50
    ).http_response


@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_degrades_the_api_loses_no_record_and_recovers(redis_server, tmp_path):
    with running_upstream() as upstream:
        endpoint = openai_endpoint("outage-cheap", upstream.base_url, "cheap-model")
        _, key = make_key(make_policy("outage", [(endpoint, 0.0)]), app="outage-app")
        _, capped_key = make_key(make_policy("outage-capped", [(endpoint, 0.0)]), app="capped-app")
        Budget.objects.create(name="capped", scope="app", scope_value="capped-app", limit=Decimal("100"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = subprocess_env(
            REDIS_URL=redis_server.url,
            CASCADEOPS_RECORD_SPOOL_DIR=str(tmp_path / "spool"),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            REDIS_OUTAGE_COOLDOWN_S=str(OUTAGE_COOLDOWN_S),
        )
        (tmp_path / "metrics").mkdir()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(port),
             "--no-access-log", "--lifespan", "on", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        capped = openai.OpenAI(base_url=f"{url}/v1", api_key=capped_key, max_retries=0, timeout=30)
        stranger = openai.OpenAI(base_url=f"{url}/v1", api_key="co-not-a-key", max_retries=0, timeout=30)
        answered: list[str] = []
        try:
            wait_until_up(f"{url}/v1/models", STARTUP_S)
            for _ in range(5):
                response = ask(client, "outage")
                assert response.status_code == 200
                assert "x-cascadeops-redis" not in response.headers
                answered.append(response.headers["x-request-id"])
            assert ask(capped, "outage-capped").status_code == 200
            answered.append("capped")
            drain_records(env)

            redis_server.stop()

            during = [ask(client, "outage") for _ in range(10)]
            assert [r.status_code for r in during] == [200] * 10
            assert {r.headers["x-cascadeops-redis"] for r in during} == {"down"}
            answered += [r.headers["x-request-id"] for r in during]
            # A key the gateway does not know is still a 401, not a 500.
            with pytest.raises(openai.AuthenticationError):
                stranger.chat.completions.create(model="outage", messages=[{"role": "user", "content": "hi"}])
            # A budget with a hard limit cannot be checked: it fails closed, and says why.
            with pytest.raises(openai.APIStatusError) as refused:
                capped.chat.completions.create(model="outage-capped", messages=[{"role": "user", "content": "hi"}])
            assert refused.value.status_code == 503
            assert "budget store" in refused.value.message
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            assert "cascadeops_redis_down 1.0" in metrics

            redis_server.start()

            recovered = None
            # Traffic until the cool-down has passed and a request found Redis again (not a
            # number of requests: a fast gateway answers a hundred within one cool-down).
            give_up_at = time.monotonic() + RECOVERY_WAIT_S
            while recovered is None and time.monotonic() < give_up_at:
                response = ask(client, "outage")
                assert response.status_code == 200
                answered.append(response.headers["x-request-id"])
                if "x-cascadeops-redis" not in response.headers:
                    recovered = response
                time.sleep(RECOVERY_PAUSE_S)
            assert recovered is not None, f"the gateway did not notice that Redis is back within {RECOVERY_WAIT_S} s"
            assert ask(capped, "outage-capped").status_code == 200
            answered.append("capped")
            assert "cascadeops_redis_down 0.0" in httpx.get(f"{url}/metrics", timeout=10).text
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
        drain_records(env)

    ids = [i for i in answered if i != "capped"]
    stored = list(RequestRecord.objects.filter(policy_name="outage").values_list("id", flat=True))
    assert sorted(str(i) for i in stored) == sorted(ids)  # every answer stored, each once
    assert RequestRecord.objects.filter(policy_name="outage-capped", status="answered").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_gateway_started_while_redis_is_down_answers_and_says_so(tmp_path):
    with running_upstream() as upstream:
        endpoint = openai_endpoint("outage-cold", upstream.base_url, "cheap-model")
        _, key = make_key(make_policy("outage-cold", [(endpoint, 0.0)]), app="cold-app")
        port = free_port()
        env = subprocess_env(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            CASCADEOPS_RECORD_SPOOL_DIR=str(tmp_path / "spool"),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        )
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--port", str(port),
             "--no-access-log", "--lifespan", "on", "--log-level", "critical"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{port}/v1/models", STARTUP_S)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=30)
            response = ask(client, "outage-cold")
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
        drain_records(env)

    assert response.status_code == 200
    assert response.headers["x-cascadeops-redis"] == "down"
    assert RequestRecord.objects.filter(id=response.headers["x-request-id"]).count() == 1
