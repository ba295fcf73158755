"""Time to first token of a streamed answer, on one keep-alive connection, for `bench.gateway`.

From writing the request to reading the first server-sent event (`data:`) of its body; the
rest of the stream is read to its end before the next request. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import time

from bench.loadgen import HEAD_END, percentile

FIRST_EVENT = b"\ndata:"
# The end of a chunked body; the gateway and the upstream both stream chunked.
LAST_CHUNK = b"\r\n0\r\n\r\n"


async def first_token_ms(host: str, port: int, request: bytes, total: int) -> list[float]:
    """Milliseconds to the first event of each of `total` streamed answers, one after another."""
    reader, writer = await asyncio.open_connection(host, port)
    latencies: list[float] = []
    try:
        for _ in range(total):
            latencies.append(await _one(reader, writer, request))
    finally:
        writer.close()
    return latencies


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> float:
    started = time.perf_counter()
    writer.write(request)
    seen = b""
    first: float | None = None
    while True:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-stream")
        seen += data
        if first is None and _first_event_in(seen):
            first = time.perf_counter()
        if first is not None and seen.endswith(LAST_CHUNK):
            if not seen.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"a streamed request failed: {seen[:300]!r}")
            return (first - started) * 1000


def _first_event_in(seen: bytes) -> bool:
    head_end = seen.find(HEAD_END)
    return head_end >= 0 and seen.find(FIRST_EVENT, head_end) >= 0


def summary(through: list[float], direct: list[float]) -> dict[str, float]:
    """p50/p99 through the gateway and direct, and the overhead at each."""
    figures = {
        "gateway_p50_ms": percentile(through, 0.50),
        "gateway_p99_ms": percentile(through, 0.99),
        "direct_p50_ms": percentile(direct, 0.50),
        "direct_p99_ms": percentile(direct, 0.99),
    }
    figures["overhead_p50_ms"] = figures["gateway_p50_ms"] - figures["direct_p50_ms"]
    figures["overhead_p99_ms"] = figures["gateway_p99_ms"] - figures["direct_p99_ms"]
    return {name: round(value, 3) for name, value in figures.items()}
