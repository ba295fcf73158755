"""The chaos run: clients, processes to kill and restart, and what the clients saw.

`tests/chaos/test_chaos.py` drives it: a fault-injecting upstream, two gateway workers, the
record flusher and 50 keep-alive clients (`python -m bench.chaos`), each its own process so
a SIGKILL hits exactly one. Nothing here decides pass or fail; the test does, from
`Observations` and the database. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import Connection, connect, encode_request
from testing.net import free_port, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Longer than the slowest cascade the chaos policy allows (two tiers, a retry each, short
# read timeouts); a request still unanswered then is a hang, reported as such.
REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 2.0
RECONNECT_PAUSE_S = 0.05
# Every `CAPPED_EVERY`th request is sent for the end user whose hard budget runs out.
CAPPED_EVERY = 5
CAPPED_USER = "capped"
CONNECTION_FAILURE = 0  # the status of an outcome where no HTTP response came back


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as a client saw it; `status` 0: the connection failed, no response."""

    sent: float  # wall clock, so the harness can compare it with kill times
    port: int
    status: int
    request_id: str
    detail: str = ""

    def as_list(self) -> list[Any]:
        return [round(self.sent, 4), self.port, self.status, self.request_id, self.detail]


def chat_request(port: int, key: str, client: int, n: int) -> bytes:
    body: dict[str, object] = {
        "model": "chaos",
        "max_tokens": 6,
        # Unique, so no cache could answer it: every request goes to the upstream.
        "messages": [{"role": "user", "content": f"Chaos {client}-{n}: count the vowels in this sentence."}],
    }
    if n % CAPPED_EVERY == 0:
        body["user"] = CAPPED_USER
    return encode_request(f"{HOST}:{port}", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})


async def chaos_client(client: int, ports: list[int], key: str, deadline: float, log: list[Outcome]) -> None:
    """Requests back to back until the deadline; on a failed connection, the other port."""
    port_index, n = client % len(ports), 0
    connection: Connection | None = None
    while time.time() < deadline:
        port = ports[port_index]
        if connection is None or connection.closed:
            connection = await _connect_or_note(port, log)
            if connection is None:
                port_index = (port_index + 1) % len(ports)
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
        sent = time.time()
        try:
            response = await asyncio.wait_for(connection.send(chat_request(port, key, client, n)), REQUEST_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.append(Outcome(sent, port, CONNECTION_FAILURE, "", f"in flight: {type(exc).__name__}: {exc}"))
            connection.close()
            connection, port_index = None, (port_index + 1) % len(ports)
            continue
        finally:
            n += 1
        detail = error_detail(response.body) if response.status >= 400 else ""
        log.append(Outcome(sent, port, response.status, response.header("x-request-id") or "", detail))
    if connection is not None:
        connection.close()


def error_detail(body: bytes) -> str:
    """`<code>: <message>` of an OpenAI-format error, its code first (a message may be long); else the body."""
    try:
        error = json.loads(body)["error"]
        return f"{error['code'] or error['type']}: {error['message']}"[:300]
    except (ValueError, TypeError, KeyError):
        return body[:300].decode("utf-8", "replace")


async def _connect_or_note(port: int, log: list[Outcome]) -> Connection | None:
    tried = time.time()
    try:
        return await asyncio.wait_for(connect(HOST, port), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        log.append(Outcome(tried, port, CONNECTION_FAILURE, "", f"connect: {type(exc).__name__}: {exc}"))
        return None


async def run_clients(ports: list[int], key: str, clients: int, seconds: float) -> list[Outcome]:
    log: list[Outcome] = []
    deadline = time.time() + seconds
    await asyncio.gather(*(chaos_client(i, ports, key, deadline, log) for i in range(clients)))
    return log


def clients_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description="The chaos test's clients.")
    parser.add_argument("--ports", required=True, help="gateway ports, comma-separated")
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",")]
    log = asyncio.run(run_clients(ports, args.key, args.clients, args.seconds))
    Path(args.out).write_text(json.dumps([o.as_list() for o in log]))


def read_outcomes(path: Path) -> list[Outcome]:
    return [Outcome(*row) for row in json.loads(path.read_text())]


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """What the upstream injects: by default 10% errors, 5% timeouts and latency spikes."""

    error_rate: float = 0.10
    timeout_rate: float = 0.05
    spike_rate: float = 0.05
    spike_ms: int = 300
    seed: int = 7

    def args(self) -> list[str]:
        return ["--error-rate", str(self.error_rate), "--error-statuses", "500,503",
                "--timeout-rate", str(self.timeout_rate), "--spike-rate", str(self.spike_rate),
                "--spike-ms", str(self.spike_ms), "--seed", str(self.seed)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class KillWindow:
    """A gateway worker SIGKILLed at `killed` and serving again from `back`."""

    port: int
    killed: float
    back: float


@dataclass
class Cluster:
    """The upstream, two gateway workers and the flusher, as processes this harness owns."""

    env: dict[str, str]
    upstream_port: int = field(default_factory=free_port)
    gateway_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: list[KillWindow] = field(default_factory=list)
    flusher_kills: list[float] = field(default_factory=list)

    @property
    def upstream_url(self) -> str:
        return f"http://{HOST}:{self.upstream_port}/v1"

    def start_upstream(self, fault: Fault) -> None:
        cmd = [sys.executable, "-m", "testing.upstream", "--port", str(self.upstream_port), *fault.args()]
        self._spawn("upstream", cmd)
        wait_until_up(f"{self.upstream_url}/models")

    def start_gateways(self) -> None:
        for port in self.gateway_ports:
            self._spawn(f"gateway:{port}", self._gateway_cmd(port))
        for port in self.gateway_ports:
            wait_until_up(f"http://{HOST}:{port}/v1/models")

    def start_flusher(self) -> None:
        self._spawn("flusher", [sys.executable, "manage.py", "run_recorder", "--interval", "0.2"])

    def outage(self, model: str, seconds: float) -> None:
        """Every call to `model` fails for `seconds`, long enough to open its breaker."""
        httpx.post(f"http://{HOST}:{self.upstream_port}/_chaos/outage", json={"model": model, "seconds": seconds})

    def upstream_stats(self) -> dict[str, dict[str, int]]:
        return dict(httpx.get(f"http://{HOST}:{self.upstream_port}/_chaos/stats").json())

    def kill_gateway(self, port: int) -> KillWindow:
        """SIGKILL one worker, start a new one on its port, and wait until it serves."""
        killed = self._kill(f"gateway:{port}")
        self._spawn(f"gateway:{port}", self._gateway_cmd(port))
        wait_until_up(f"http://{HOST}:{port}/v1/models")
        window = KillWindow(port=port, killed=killed, back=time.time())
        self.kills.append(window)
        return window

    def kill_flusher(self, down_s: float) -> None:
        """SIGKILL the flusher mid-work and start another after `down_s`."""
        self.flusher_kills.append(self._kill("flusher"))
        time.sleep(down_s)
        self.start_flusher()

    def stop_all(self) -> None:
        for name in list(self.processes):
            proc = self.processes.pop(name)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def _gateway_cmd(self, port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "cascadeops.asgi:application", "--host", HOST, "--port", str(port),
                "--no-access-log", "--lifespan", "off", "--log-level", "warning"]  # fmt: skip

    def _spawn(self, name: str, cmd: list[str]) -> None:
        self.processes[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env)

    def _kill(self, name: str) -> float:
        proc = self.processes.pop(name)
        when = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return when


# --- breakers ----------------------------------------------------------------------------


class BreakerWatch(threading.Thread):
    """Polls breaker states (endpoint → state) and keeps every change it sees.

    `read` is a coroutine function, called on this thread's own event loop (the shared
    Redis client belongs to the loop that made it); `finish`, another, runs once at the
    end on that loop (to close the database connections `read` opened).
    """

    def __init__(self, read: Callable[[], Any], finish: Callable[[], Any], interval_s: float = 0.1) -> None:
        super().__init__(name="breaker-watch", daemon=True)
        self.read = read
        self.finish = finish
        self.interval_s = interval_s
        self.changes: list[tuple[float, str, str]] = []  # (time, endpoint, new state)
        self.errors: Counter[str] = Counter()
        self._stopping = threading.Event()

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        last: dict[str, str] = {}
        try:
            while not self._stopping.wait(self.interval_s):
                try:
                    states: Mapping[str, Any] = loop.run_until_complete(self.read())
                except Exception as exc:  # kept for the report: the test says why it saw nothing
                    self.errors[f"{type(exc).__name__}: {exc}"] += 1
                    continue
                self._note(last, {str(k): str(getattr(v, "value", v)) for k, v in states.items()})
        finally:
            loop.run_until_complete(self.finish())
            loop.close()

    def _note(self, last: dict[str, str], states: dict[str, str]) -> None:
        now = time.time()
        for endpoint, state in states.items():
            if last.get(endpoint, "closed") != state:
                self.changes.append((now, endpoint, state))
            last[endpoint] = state

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)

    def opened_and_closed(self) -> set[str]:
        """Endpoints whose breaker was seen open and, later, closed again."""
        opened: dict[str, float] = {}
        both = set()
        for when, endpoint, state in self.changes:
            if state == "open":
                opened.setdefault(endpoint, when)
            elif state == "closed" and endpoint in opened:
                both.add(endpoint)
        return both


# --- what the clients saw ----------------------------------------------------------------


@dataclass
class Observations:
    """The clients' outcomes, sorted into what the test checks."""

    answered: dict[str, Outcome] = field(default_factory=dict)  # request id → 200
    answered_without_id: list[Outcome] = field(default_factory=list)
    server_errors: list[Outcome] = field(default_factory=list)  # 5xx
    rejected: Counter[int] = field(default_factory=Counter)  # 4xx by status
    rejected_detail: list[Outcome] = field(default_factory=list)
    connection_failures: list[Outcome] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @classmethod
    def sort(cls, outcomes: list[Outcome]) -> Observations:
        seen = cls()
        for o in outcomes:
            seen.statuses[o.status] += 1
            if o.status == CONNECTION_FAILURE:
                seen.connection_failures.append(o)
            elif o.status == 200 and o.request_id:
                seen.answered[o.request_id] = o
            elif o.status == 200:
                seen.answered_without_id.append(o)
            elif o.status >= 500:
                seen.server_errors.append(o)
            else:
                seen.rejected[o.status] += 1
                seen.rejected_detail.append(o)
        return seen

    def failures_outside(self, windows: list[KillWindow], *, before_s: float, after_s: float) -> list[Outcome]:
        """Connection failures no kill explains: not on the killed port, or not around its kill.

        `before_s`: a request sent that long before the kill may still have been in flight.
        """
        return [
            o
            for o in self.connection_failures
            if not any(w.port == o.port and w.killed - before_s <= o.sent <= w.back + after_s for w in windows)
        ]


if __name__ == "__main__":
    clients_main()
