"""FastHTTPTransport against the loopback upstream (testing.upstream) and a scripted raw TCP server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from routing.engine.types import ChatRequest, EndpointSnapshot, Message, ProviderType
from routing.providers.openai_compat import OpenAICompatProvider, uses_httpx_transport
from routing.providers.transport import FastHTTPTransport, Outgoing, url_origin
from testing.upstream import UpstreamBehaviour, running_upstream

CHAT = ChatRequest(messages=(Message("user", "What is 6 x 7?"),))
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def ok(body: bytes = b"hello", *, headers: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return version + b" 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), headers, body)


class ServerConnection:
    """One accepted connection, as a handler sees it."""

    def __init__(
        self, server: ScriptedServer, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.index = index
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> bytes | None:
        """The request's head (its body is read and dropped), or None when the client hung up."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.hangups += 1
            return None
        length = next(
            (int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
        )
        await self.reader.readexactly(length)
        self.server.requests.append((self.index, head))
        return head

    async def send(self, *parts: bytes, pause_s: float = 0.0) -> None:
        for i, part in enumerate(parts):
            if i and pause_s:
                await asyncio.sleep(pause_s)
            self.writer.write(part)
            await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[ServerConnection], Awaitable[None]]


class ScriptedServer:
    """A loopback TCP server that runs a handler per connection and remembers what it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.hangups = 0
        self.requests: list[tuple[int, bytes]] = []
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = ServerConnection(self, self.connections, reader, writer)
        self.connections += 1
        try:
            await self.handler(conn)
        except asyncio.CancelledError:
            pass  # stopped at the end of a test: end quietly, as asyncio's stream callback expects
        finally:
            writer.close()

    @property
    def connections_used(self) -> set[int]:
        return {index for index, _ in self.requests}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def scripted_server(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer(handler)
    server = await asyncio.start_server(scripted.serve, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls else "http"
    scripted.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield scripted
    finally:
        server.close()
        await scripted.stop()


def keep_answering(response: bytes = ok(), *, delay_s: float = 0.0) -> Handler:
    async def handler(conn: ServerConnection) -> None:
        while await conn.read_request() is not None:
            if delay_s:
                await asyncio.sleep(delay_s)
            await conn.send(response)

    return handler


def fast_client(*, timeout: httpx.Timeout | float = 5.0, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=FastHTTPTransport(**kwargs), timeout=timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def listener_that_never_accepts() -> Iterator[int]:
    """A port whose accept queue is full, so the kernel drops new connection attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


# Keep-alive and framing


async def test_it_reuses_the_connection_for_consecutive_requests() -> None:
    with running_upstream() as upstream:
        async with fast_client() as client:
            first = await client.get(f"{upstream.base_url}/models")
            await client.post(f"{upstream.base_url}/chat/completions", json={"model": "cheap", "messages": []})
            first_client = upstream.last_client
            await client.post(f"{upstream.base_url}/chat/completions", json={"model": "cheap", "messages": []})

    assert first.status_code == 200
    assert upstream.calls["cheap"] == 2
    assert upstream.last_client == first_client


async def test_it_reuses_the_most_recently_released_idle_connection_first() -> None:
    # Newest first keeps the pool's hot connections hot and lets the rest expire.
    async def slow_for_slow_path(conn: ServerConnection) -> None:
        while (head := await conn.read_request()) is not None:
            if head.startswith(b"GET /slow"):
                await asyncio.sleep(0.2)
            await conn.send(ok())

    async with scripted_server(slow_for_slow_path) as server, fast_client(max_connections=2) as client:
        await asyncio.gather(client.get(f"{server.url}/fast"), client.get(f"{server.url}/slow"))
        await client.get(f"{server.url}/next")

    served = {head.split(b" ")[1]: index for index, head in server.requests}
    assert served[b"/fast"] != served[b"/slow"]
    assert served[b"/next"] == served[b"/slow"]


async def test_it_drops_connections_idle_for_longer_than_the_keepalive_expiry() -> None:
    async with scripted_server(keep_answering()) as server, fast_client(keepalive_expiry=0.05) as client:
        await client.get(server.url)
        await asyncio.sleep(0.1)
        await client.get(server.url)

    assert [index for index, _ in server.requests] == [0, 1]


async def test_it_returns_status_headers_body_and_version_as_an_httpx_response() -> None:
    with running_upstream(UpstreamBehaviour(answer="42")) as upstream:
        async with fast_client() as client:
            response = await client.post(f"{upstream.base_url}/chat/completions", json={"model": "m", "messages": []})

    assert (response.status_code, response.reason_phrase, response.http_version) == (200, "OK", "HTTP/1.1")
    assert response.headers["content-type"] == "application/json"
    assert response.json()["choices"][0]["message"]["content"] == "42"
    assert int(response.headers["content-length"]) == len(response.content)


async def test_it_reads_a_content_length_body_that_arrives_in_pieces() -> None:
    async def handler(conn: ServerConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-", b"Length: 11\r\n\r\nhello", b" world", pause_s=0.01)

    async with scripted_server(handler) as server, fast_client() as client:
        responses = [await client.get(server.url), await client.get(server.url)]

    assert [r.content for r in responses] == [b"hello world", b"hello world"]
    assert server.connections == 1


async def test_it_reads_a_chunked_body_and_keeps_the_connection() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def handler(conn: ServerConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(chunked, b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n", pause_s=0.01)

    async with scripted_server(handler) as server, fast_client() as client:
        responses = [await client.get(server.url), await client.get(server.url)]

    assert [r.content for r in responses] == [b"hello world", b"hello world"]
    assert "content-length" not in responses[0].headers
    assert server.connections == 1


async def test_a_body_without_length_ends_when_the_server_closes() -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"until ", b"the end", pause_s=0.01)

    async with scripted_server(handler) as server, fast_client() as client:
        responses = [await client.get(server.url), await client.get(server.url)]

    assert [r.content for r in responses] == [b"until the end", b"until the end"]
    assert server.connections == 2


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 11\r\n\r\n"),
    ],
)
async def test_head_requests_and_bodiless_statuses_end_at_the_headers(method: str, head: bytes) -> None:
    async def handler(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(head)
        await keep_answering()(conn)

    async with scripted_server(handler) as server, fast_client(timeout=1.0) as client:
        bodiless = await client.request(method, server.url)
        after = await client.get(server.url)

    assert bodiless.content == b""
    assert after.content == b"hello"
    assert server.connections == 1


async def test_it_skips_an_informational_response() -> None:
    response = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + ok(b"final")

    async with scripted_server(keep_answering(response)) as server, fast_client() as client:
        answer = await client.get(server.url)

    assert (answer.status_code, answer.reason_phrase, answer.content) == (200, "OK", b"final")
    assert "link" not in answer.headers


@pytest.mark.parametrize(
    "response",
    [
        ok(headers=b"Connection: close\r\n"),
        ok(headers=b"Connection: keep-alive\r\n", version=b"HTTP/1.0"),
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_it_does_not_reuse_a_connection_the_response_did_not_keep_alive(response: bytes) -> None:
    # The server would answer on the same connection: only the client's choice can open a second.
    async with scripted_server(keep_answering(response)) as server, fast_client() as client:
        await client.get(server.url)
        await client.get(server.url)

    assert server.connections_used == {0, 1}


async def test_it_does_not_reuse_a_connection_the_request_asked_to_close() -> None:
    async with scripted_server(keep_answering()) as server, fast_client() as client:
        await client.get(server.url, headers={"Connection": "close"})
        await client.get(server.url)

    assert server.connections_used == {0, 1}


async def test_it_streams_a_chunked_request_body() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"model": "cheap", '
        yield b'"messages": []}'

    with running_upstream() as upstream:
        async with fast_client() as client:
            response = await client.post(f"{upstream.base_url}/chat/completions", content=pieces())

    assert response.status_code == 200
    assert upstream.last_headers["transfer-encoding"] == "chunked"
    assert upstream.last_request == {"model": "cheap", "messages": []}


async def test_it_refuses_line_breaks_in_header_values() -> None:
    async with scripted_server(keep_answering()) as server, fast_client() as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(server.url, headers={"X-Note": "a\r\nX-Injected: 1"})

    assert server.requests == []


# Stale and broken connections


async def test_it_replaces_an_idle_connection_the_server_closed() -> None:
    async def answer_once(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(ok())

    async with scripted_server(answer_once) as server, fast_client() as client:
        await client.get(server.url)
        await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
        response = await client.get(server.url)

    assert response.content == b"hello"
    assert len(server.requests) == 2
    assert server.connections_used == {0, 1}


async def test_it_retries_once_on_a_new_connection_when_a_reused_one_closes_before_answering() -> None:
    # The keep-alive race: the server closes the connection just as the next request arrives.
    async def close_on_second_request(conn: ServerConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(ok(b"first"))
            await conn.read_request()
            return
        await keep_answering(ok(b"retried"))(conn)

    async with scripted_server(close_on_second_request) as server, fast_client() as client:
        first = await client.get(server.url)
        second = await client.get(server.url)

    assert (first.content, second.content) == (b"first", b"retried")
    assert [index for index, _ in server.requests] == [0, 0, 1]


async def test_a_post_the_server_read_is_never_sent_twice() -> None:
    # The server read the chat request and died without answering: it may have run it.
    # Sending it again could pay for it twice, so the caller sees the error instead.
    async def close_on_second_request(conn: ServerConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(ok(b"first"))
            await conn.read_request()
            return
        await keep_answering(ok(b"retried"))(conn)

    async with scripted_server(close_on_second_request) as server, fast_client() as client:
        await client.post(server.url, content=b"{}")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(server.url, content=b"{}")

    assert [index for index, _ in server.requests] == [0, 0]  # never sent on a new connection


async def test_it_retries_a_stale_connection_only_once() -> None:
    async def answer_first_request_only(conn: ServerConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(ok())
        await conn.read_request()

    async with scripted_server(answer_first_request_only) as server, fast_client() as client:
        await client.get(server.url)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url)

    assert [index for index, _ in server.requests] == [0, 0, 1]


async def test_a_new_connection_closed_before_answering_is_not_retried() -> None:
    async def hang_up(conn: ServerConnection) -> None:
        await conn.read_request()

    async with scripted_server(hang_up) as server, fast_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)

    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("partial", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part", httpx.ReadError),
    ],
    ids=["closed-in-headers", "closed-in-body", "reset-in-body"],
)
async def test_a_response_cut_off_midway_fails_and_is_not_retried(partial: bytes, error: type[Exception]) -> None:
    async def cut_off_second_answer(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(ok())
        await conn.read_request()
        await conn.send(partial)
        await asyncio.sleep(0.01)
        if error is httpx.ReadError:
            conn.reset()

    async with scripted_server(cut_off_second_answer) as server, fast_client() as client:
        await client.get(server.url)
        with pytest.raises(error):
            await client.get(server.url)

    assert len(server.requests) == 2


async def test_garbage_instead_of_a_response_is_a_protocol_error() -> None:
    async with scripted_server(keep_answering(b"SSH-2.0-OpenSSH_9.6\r\n")) as server, fast_client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await client.get(server.url)


# Connecting


async def test_it_speaks_https_and_keeps_the_tls_connection_alive(certificate: tuple[Path, Path]) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    async with (
        scripted_server(keep_answering(), tls=server_tls(certificate)) as server,
        fast_client(ssl_context=trusting) as client,
    ):
        responses = [await client.get(server.url), await client.get(server.url)]

    assert [r.content for r in responses] == [b"hello", b"hello"]
    assert server.connections == 1


async def test_it_verifies_certificates_like_httpx_by_default(certificate: tuple[Path, Path]) -> None:
    async with scripted_server(keep_answering(), tls=server_tls(certificate)) as server, fast_client() as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(server.url)

    assert server.requests == []


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with fast_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{closed_port()}/")


async def test_a_server_that_does_not_accept_is_a_connect_timeout() -> None:
    with listener_that_never_accepts() as port:
        async with fast_client(timeout=httpx.Timeout(5, connect=0.2)) as client:
            started = time.perf_counter()
            with pytest.raises(httpx.ConnectTimeout):
                await client.get(f"http://127.0.0.1:{port}/")

    assert time.perf_counter() - started < 1.5


async def test_an_unsupported_scheme_is_rejected() -> None:
    async with fast_client() as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/file")


# Timeouts and the pool


async def test_a_silent_upstream_times_out_after_the_read_timeout() -> None:
    with running_upstream() as upstream:
        async with fast_client(timeout=httpx.Timeout(5, read=0.3)) as client:
            started = time.perf_counter()
            with pytest.raises(httpx.ReadTimeout):
                await client.post(f"{upstream.base_url}/chat/completions", json={"model": "hang", "messages": []})
            elapsed = time.perf_counter() - started

    assert 0.3 <= elapsed < 1.5


async def test_the_read_timeout_bounds_silence_not_the_whole_response() -> None:
    async def trickle(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n", b"Content-Length: 5\r\n\r\n", b"h", b"e", b"ll", b"o", pause_s=0.12)

    async with scripted_server(trickle) as server, fast_client(timeout=httpx.Timeout(5, read=0.5)) as client:
        started = time.perf_counter()
        response = await client.get(server.url)

    assert response.content == b"hello"
    assert time.perf_counter() - started > 0.5


async def test_a_request_waiting_longer_than_the_pool_timeout_for_a_busy_connection_fails() -> None:
    async def never_answer(conn: ServerConnection) -> None:
        await conn.read_request()
        await asyncio.sleep(3600)

    async with scripted_server(never_answer) as server, fast_client(max_connections=1) as client:
        busy = asyncio.create_task(client.get(server.url))
        while not server.requests:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(httpx.PoolTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5, pool=0.2))
        elapsed = time.perf_counter() - started
        busy.cancel()

    assert 0.2 <= elapsed < 1.5
    assert server.connections == 1


async def test_waiting_requests_take_turns_on_a_pool_of_one() -> None:
    async with scripted_server(keep_answering(delay_s=0.02)) as server, fast_client(max_connections=1) as client:
        responses = await asyncio.gather(*(client.get(server.url) for _ in range(3)))

    assert [r.content for r in responses] == [b"hello"] * 3
    assert server.connections == 1


async def test_a_cancelled_request_gives_its_connection_slot_back() -> None:
    async def hang_first_request(conn: ServerConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await asyncio.sleep(3600)
        await keep_answering()(conn)

    async with scripted_server(hang_first_request) as server, fast_client(max_connections=1) as client:
        hanging = asyncio.create_task(client.get(server.url))
        while not server.requests:
            await asyncio.sleep(0.01)
        hanging.cancel()
        response = await client.get(server.url, timeout=httpx.Timeout(5, pool=1))

    assert response.content == b"hello"


async def test_fifty_concurrent_requests_over_a_pool_of_ten_all_get_their_own_answer() -> None:
    async def echo_path(conn: ServerConnection) -> None:
        while (head := await conn.read_request()) is not None:
            await asyncio.sleep(0.005)
            await conn.send(ok(head.split(b" ")[1]))

    async with scripted_server(echo_path) as server, fast_client(max_connections=10) as client:
        responses = await asyncio.gather(*(client.get(f"{server.url}/{n}") for n in range(50)))

    assert [r.text for r in responses] == [f"/{n}" for n in range(50)]
    assert 1 < server.connections <= 10


async def test_fifty_concurrent_calls_to_the_upstream_over_a_pool_of_ten_succeed() -> None:
    body = {"model": "slow-5", "messages": []}
    with running_upstream() as upstream:
        async with fast_client(max_connections=10) as client:
            url = f"{upstream.base_url}/chat/completions"
            responses = await asyncio.gather(*(client.post(url, json=body) for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    assert upstream.calls["slow-5"] == 50


async def test_send_raw_takes_bytes_and_gives_status_headers_and_body_as_bytes() -> None:
    async with scripted_server(keep_answering(ok(headers=b"X-Trace: abc\r\n"))) as server:
        transport = FastHTTPTransport()
        origin = url_origin(httpx.URL(server.url))
        head = b"GET /raw HTTP/1.1\r\nHost: %s\r\n\r\n" % origin[1].encode()
        responses = [await transport.send_raw(origin, Outgoing(head, b""), {"read": 5}) for _ in range(2)]
        await transport.aclose()

    assert [(r.status, r.reason, r.content, r.stream) for r in responses] == [(200, b"OK", b"hello", None)] * 2
    assert responses[0].header(b"x-trace") == b"abc"
    assert responses[0].header(b"x-missing") is None
    assert [head for _, head in server.requests] == [head, head]
    assert server.connections == 1


async def test_closing_a_stream_whose_body_has_all_arrived_keeps_the_connection() -> None:
    # A caller that stops at an SSE `[DONE]` never reads the end of the body, but it is in:
    # the connection is in a clean state and goes back to the pool.
    whole = b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\ndata: one\n\ndata: two\n\n"
    async with scripted_server(keep_answering(whole)) as server:
        transport = FastHTTPTransport(max_connections=1)
        origin = url_origin(httpx.URL(server.url))
        outgoing = Outgoing(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"")
        for _ in range(2):
            response = await transport.send_raw(origin, outgoing, {"read": 5}, streaming=True)
            assert response.stream is not None
            assert await anext(aiter(response.stream)) == b"data: one\n\ndata: two\n\n"
            await response.stream.aclose()
        await transport.aclose()

    assert server.connections == 1


async def test_aclose_closes_every_pooled_connection() -> None:
    async with scripted_server(keep_answering(delay_s=0.05)) as server:
        client = fast_client()
        await asyncio.gather(client.get(server.url), client.get(server.url))
        await client.aclose()
        for _ in range(100):
            if server.hangups == 2:
                break
            await asyncio.sleep(0.01)

    assert server.connections == 2
    assert server.hangups == 2


# The provider over the fast transport


def make_endpoint(base_url: str, **kwargs: Any) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=1,
        name="cheap-tier",
        provider_kind=ProviderType.OPENAI_COMPAT,
        model_id="cheap",
        input_price_per_m=Decimal("0.50"),
        output_price_per_m=Decimal("1.50"),
        base_url=base_url,
        **kwargs,
    )


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.usefixtures("no_proxies")
async def test_the_provider_parses_usage_and_logprobs_over_the_fast_transport() -> None:
    behaviour = UpstreamBehaviour(
        answer="42", prompt_tokens=31, completion_tokens=2, cached_tokens=16, logprobs=(-0.5,)
    )
    with running_upstream(behaviour) as upstream:
        endpoint = make_endpoint(upstream.base_url)
        provider = OpenAICompatProvider(endpoint)
        try:
            completion = await provider.complete(replace(CHAT, logprobs=True), max_tokens=8)
            first_client = upstream.last_client
            await provider.complete(CHAT, max_tokens=8)
        finally:
            await provider.aclose()

    assert not uses_httpx_transport(endpoint)
    assert completion.text == "42"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (31, 2, 16)
    assert completion.logprobs == (-0.5,)
    assert upstream.last_headers["content-type"] == "application/json"
    assert upstream.last_client == first_client


@pytest.mark.usefixtures("no_proxies")
@pytest.mark.parametrize(
    ("environment", "base_url", "options", "expected"),
    [
        ({}, "https://api.example.com/v1", {}, False),
        ({}, "https://api.example.com/v1", {"transport": "httpx"}, True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.example.com/v1", {}, True),
        ({"https_proxy": "http://proxy:3128"}, "https://api.example.com/v1", {}, True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://vllm:8000/v1", {}, False),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://vllm:8000/v1", {}, True),
        ({"ALL_PROXY": "socks5://proxy:1080"}, "http://vllm:8000/v1", {}, True),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost,example.com"},
            "https://api.example.com/v1",
            {},
            False,
        ),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com"}, "https://example.com/v1", {}, True),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "127.0.0.1"}, "http://127.0.0.1:8000/v1", {}, False),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, "http://vllm:8000/v1", {}, False),
        ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "vllm:9000"}, "http://vllm:8000/v1", {}, True),
        # httpx sends credentials in the URL as basic auth; the direct path would drop them.
        ({}, "http://user:secret@vllm:8000/v1", {}, True),
    ],
)
def test_it_uses_httpx_transport_when_asked_to_or_when_a_proxy_applies(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], base_url: str, options: dict[str, str], expected: bool
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert uses_httpx_transport(make_endpoint(base_url, options=options)) is expected


async def test_the_provider_still_works_over_httpx_transport() -> None:
    with running_upstream(UpstreamBehaviour(answer="42")) as upstream:
        provider = OpenAICompatProvider(make_endpoint(upstream.base_url, options={"transport": "httpx"}))
        try:
            completion = await provider.complete(CHAT, max_tokens=8)
        finally:
            await provider.aclose()

    assert completion.text == "42"


@pytest.mark.usefixtures("no_proxies")
async def test_the_provider_calls_an_https_endpoint_directly_over_one_tls_connection(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx's default verification, which the fast transport copies, trusts SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    body = b'{"choices": [{"message": {"content": "42"}, "finish_reason": "stop"}]}'
    async with scripted_server(keep_answering(ok(body)), tls=server_tls(certificate)) as server:
        endpoint = make_endpoint(f"{server.url}/v1")
        provider = OpenAICompatProvider(endpoint)
        answers = [await provider.complete(CHAT, max_tokens=8) for _ in range(2)]
        await provider.aclose()

    assert not uses_httpx_transport(endpoint)
    assert [a.text for a in answers] == ["42", "42"]
    assert server.connections == 1
