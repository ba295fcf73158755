"""The web server `serve` runs cuts off a request whose headers or body stall.

Real parts: uvicorn started with the command line `manage.py serve` builds, and raw sockets
that send part of a request and then nothing.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from routing.management.commands.serve import Command
from testing.net import HOST, free_port, wait_until_up
from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow
# How long the test waits for the server to act before it fails; not what it measures.
GIVE_UP_S = 60.0


@pytest.fixture
def web_server(transactional_db: None, tmp_path) -> Iterator[int]:
    port = free_port()
    options = {"host": HOST, "port": port, "web_workers": 1, "worker_log_level": "WARNING"}
    web_command = Command().commands(options)[0]
    server = subprocess.Popen(
        web_command,
        env=subprocess_env(CASCADEOPS_REQUEST_READ_TIMEOUT_SECONDS="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)),
    )
    try:
        wait_until_up(f"http://{HOST}:{port}/v1/models", GIVE_UP_S)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=60)


def answer_to(port: int, sent: bytes) -> bytes:
    """Everything the server sends on a connection that sent `sent` and then stalled, until it closes."""
    with socket.create_connection((HOST, port), timeout=GIVE_UP_S) as conn:
        conn.sendall(sent)
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        return received


def test_it_uses_the_read_deadline_protocol_and_the_documented_limits():
    command = Command().commands({"host": HOST, "port": 1, "web_workers": 1, "worker_log_level": "WARNING"})[0]

    assert command[command.index("--http") + 1] == "cascadeops.server:ReadDeadlineHttpToolsProtocol"
    assert command[command.index("--timeout-keep-alive") + 1] == "5"
    assert command[command.index("--limit-concurrency") + 1] == "1000"


def test_stalled_headers_are_answered_408_and_the_connection_closed(web_server):
    answer = answer_to(web_server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")

    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_stalled_body_is_answered_408_and_the_connection_closed(web_server):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"

    answer = answer_to(web_server, head + b'{"model": ')

    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_request_sent_in_time_is_served_and_its_connection_kept(web_server):
    with httpx.Client(base_url=f"http://{HOST}:{web_server}") as client:
        first = client.get("/v1/models")
        second = client.get("/v1/models")

    assert (first.status_code, second.status_code) == (401, 401)
    assert first.headers.get("connection") != "close"
