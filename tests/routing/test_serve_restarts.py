"""`manage.py serve` starts a child that died again, and keeps the others running.

Real processes: serve with its uvicorn, Celery worker and beat; the worker is killed with
SIGKILL, as the kernel's OOM killer or a crash would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testing.net import free_port, wait_until_up
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 90.0

pytestmark = pytest.mark.slow


def started_pids(log: Path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{name} started \(pid (\d+)\)", log.read_text(errors="replace"))]


def wait_for(condition, what: str, within_s: float = STARTUP_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; serve reaps its children, so a dead one is gone.
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.django_db(transaction=True)
def test_it_starts_a_killed_worker_again_and_the_web_server_keeps_answering(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(LOG_LEVEL="INFO", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)),
        )
    try:
        wait_until_up(f"{url}/v1/models", STARTUP_S)
        wait_for(lambda: len(started_pids(log, "worker")) == 1, "the worker to start")
        (first_worker,) = started_pids(log, "worker")
        web_pid = started_pids(log, "web")[0]

        os.kill(first_worker, signal.SIGKILL)
        wait_for(lambda: len(started_pids(log, "worker")) == 2, "the worker to be started again")

        second_worker = started_pids(log, "worker")[1]
        assert second_worker != first_worker
        assert alive(second_worker)
        assert f"worker (pid {first_worker}) exited with status -9; starting it again in 1 s" in log.read_text()
        # The others were left alone: the same web server answers, beat was never restarted.
        assert started_pids(log, "web") == [web_pid]
        assert started_pids(log, "beat") and len(started_pids(log, "beat")) == 1
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        assert serve.poll() is None
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        status = serve.wait(timeout=120)
    assert status == 0
