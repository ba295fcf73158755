"""Load generators lean enough not to be the bottleneck: a raw-socket asyncio client, or wrk.

The Python client spends a few tens of microseconds of CPU per request (an httpx client,
about a millisecond); `wrk` is used when it is on the PATH, except for the cache-hit
measurement, which needs response headers. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
HEAD_END = b"\r\n\r\n"


def encode_request(host: str, path: str, body: dict[str, object], headers: dict[str, str] | None = None) -> bytes:
    """One complete HTTP/1.1 POST with a JSON body, ready to write to a socket."""
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        """One header's value (the first), looked up only when asked for."""
        found = re.search(rb"\r\n" + re.escape(name.encode()) + rb":[ \t]*([^\r]*)", self.head, re.IGNORECASE)
        return found.group(1).decode("latin-1") if found else None


class ResponseParser:
    """Splits a byte stream into responses with a Content-Length or chunked body."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> Response | None:
        self.buffer += data
        return self.next_response()

    def next_response(self) -> Response | None:
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return None
        head = bytes(self.buffer[:end])
        start = end + len(HEAD_END)
        if length := CONTENT_LENGTH.search(head):
            stop = start + int(length.group(1))
            if len(self.buffer) < stop:
                return None
            body = bytes(self.buffer[start:stop])
        elif CHUNKED.search(head):
            parsed = dechunk(self.buffer, start)
            if parsed is None:
                return None
            body, stop = parsed
        else:
            raise ValueError(f"a response with neither Content-Length nor chunking: {head[:200]!r}")
        del self.buffer[:stop]
        return Response(status=int(head[9:12]), head=head, body=body)


def dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """The body of a chunked message starting at `start` and where it ends, or None if incomplete."""
    parts, position = [], start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        chunk_start = line_end + 2
        if size == 0:
            # No trailers are sent by the servers measured here: the last chunk ends in CRLF.
            stop = chunk_start + 2
            return (b"".join(parts), stop) if len(buffer) >= stop else None
        if len(buffer) < chunk_start + size + 2:
            return None
        parts.append(bytes(buffer[chunk_start : chunk_start + size]))
        position = chunk_start + size + 2


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.parser = ResponseParser()
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.parser.feed(data)
        if response is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError(f"connection closed: {exc}"))

    async def send(self, request: bytes) -> Response:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, host, port)
    return connection


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send load and what: requests are used in turn, one after the other."""

    host: str
    port: int
    requests: Sequence[bytes]


@dataclass(slots=True)
class LoadRun:
    """Every request's latency (ms), and when a header is watched, its value per request."""

    latencies_ms: list[float] = field(default_factory=list)
    tags: list[str | None] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0


async def python_load(
    target: Target,
    concurrency: int,
    *,
    seconds: float | None = None,
    total: int | None = None,
    watch_header: str | None = None,
) -> LoadRun:
    """`concurrency` clients send requests back to back until `total` are done or `seconds` pass."""
    run = LoadRun()
    budget = itertools.count() if total is None else iter(range(total))
    bodies = itertools.cycle(target.requests)
    connections = [await connect(target.host, target.port) for _ in range(concurrency)]
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + seconds if seconds is not None else float("inf")

    async def client(connection: Connection) -> None:
        for _ in budget:
            sent = time.perf_counter()
            if sent >= deadline:
                return
            response = await connection.send(next(bodies))
            run.latencies_ms.append((time.perf_counter() - sent) * 1000)
            run.statuses[response.status] += 1
            if watch_header is not None:
                run.tags.append(response.header(watch_header))

    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        run.wall_s = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - cpu_started
        for connection in connections:
            connection.close()
    return run


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a load run measured, whichever generator ran it."""

    generator: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    non_2xx: int
    client_cpu_us_per_request: float

    def as_dict(self) -> dict[str, object]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summarise(run: LoadRun, latencies: Sequence[float] | None = None) -> LoadSummary:
    values = run.latencies_ms if latencies is None else latencies
    count = len(run.latencies_ms)
    return LoadSummary(
        generator="python",
        requests=count,
        rps=count / run.wall_s if run.wall_s else 0.0,
        p50_ms=percentile(values, 0.50),
        p99_ms=percentile(values, 0.99),
        mean_ms=sum(values) / len(values) if values else float("nan"),
        non_2xx=sum(n for status, n in run.statuses.items() if not 200 <= status < 300),
        client_cpu_us_per_request=run.client_cpu_s * 1e6 / max(count, 1),
    )


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


# wrk prints its summary for people; this `done` hook prints the figures as one JSON line.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"mean_us": %f, "non_2xx": %d, "socket_errors": %d}}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.mean, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_load(
    url: str, body: dict[str, object], headers: dict[str, str], concurrency: int, seconds: float
) -> LoadSummary:
    """The same measurement made by wrk (one thread: the other core belongs to the server)."""
    all_headers = {"Content-Type": "application/json", **headers}
    header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in all_headers.items())
    script = WRK_SCRIPT.format(body=json.dumps(body), headers=header_lines)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(out.stdout.split("WRKJSON", 1)[1].splitlines()[0])
    if figures["socket_errors"]:
        raise RuntimeError(f"wrk saw {figures['socket_errors']} socket errors against {url}:\n{out.stdout}")
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    requests = figures["requests"]
    return LoadSummary(
        generator="wrk",
        requests=requests,
        rps=requests / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        mean_ms=figures["mean_us"] / 1000,
        non_2xx=figures["non_2xx"],
        client_cpu_us_per_request=cpu_s * 1e6 / max(requests, 1),
    )
