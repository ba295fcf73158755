"""A lean HTTP/1.1 keep-alive transport for httpx: asyncio protocols and httptools' C parser.

httpx's default transport (httpcore's pool, h11, anyio) costs about a millisecond per call
against a loopback upstream, more than the rest of the gateway's overhead together; a raw
keep-alive connection costs a sixth of that. `FastHTTPTransport` keeps httpx as the API
(`httpx.Request` in, `httpx.Response` out, httpx's exception classes, `httpx.Timeout`
semantics) and replaces only what sits underneath: the pool and the HTTP/1.1 codec.

- One pool per (scheme, host, port), at most `max_connections` connections each; idle
  connections are reused newest first, and dropped after `keepalive_expiry` seconds idle,
  when the server closes them, after `Connection: close` and after HTTP/1.0 responses.
- A reused connection that fails before the first response byte (the server closed it
  while we were writing) is retried once on a fresh connection; never after a partial
  response, and never with a streamed request body, which cannot be sent twice.
- Timeouts come from `request.extensions["timeout"]`, as httpx sets them: `connect` covers
  the TCP and TLS handshakes, `write` each wait for the socket to accept more bytes,
  `read` the longest silence while waiting for the response, `pool` the wait for a free
  connection.
- Response bodies are read fully (Content-Length, chunked, or until the server closes)
  and handed to httpx as a `ByteStream`, so httpx still decodes gzip and the like.
- A request whose `extensions[STREAM_RESPONSE]` is true gets its response as soon as the
  headers are in, with a body that yields bytes as they arrive (server-sent events). The
  connection stays busy until the body has been read to its end, when it goes back to the
  pool, or closed (`response.aclose()`) before that, when it is dropped (unless the whole
  body had already arrived): the server sees the close at once, which is how a caller
  cancels a streamed answer.
- `send_raw` is the same pool without httpx's objects: a request already encoded as bytes
  (`Outgoing`) in, a `RawResponse` (status, headers and body as bytes) out. A caller that
  sends the same request shape many times (`openai_compat`) encodes its request line and
  static headers once and skips building an `httpx.Request` and `httpx.Response` per call.

Not here: proxies, HTTP/2 and protocol upgrades. `openai_compat` uses httpx's own client
and transport when the environment configures a proxy (see `environment_proxy_applies`).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import NamedTuple, cast

import httptools
import httpx

__all__ = [
    "STREAM_RESPONSE",
    "FastHTTPTransport",
    "Origin",
    "Outgoing",
    "RawResponse",
    "environment_proxy_applies",
    "url_origin",
]

DEFAULT_MAX_CONNECTIONS = 100
# httpx's default: shorter than the idle timeout of most servers (uvicorn: 5 s, nginx: 75 s).
DEFAULT_KEEPALIVE_EXPIRY_S = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_PORT = 65535
NO_BODY_STATUSES = frozenset({204, 304})
# asyncio may run a timer up to a clock tick early; don't reschedule for less than this.
TIMER_SLACK_S = 0.001
# The request extension that asks for the body as it arrives (httpx ignores unknown ones).
STREAM_RESPONSE = "cascadeops.stream_response"

Origin = tuple[str, str, int]
Body = bytes | AsyncIterable[bytes]
Timeouts = Mapping[str, float | None]


class FastHTTPTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over pooled keep-alive connections; pass it as `httpx.AsyncClient(transport=...)`."""

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._pools: dict[Origin, _Pool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            pool = self._pool_at(url_origin(request.url))
            outgoing = encode_request(request)
            streaming = bool(request.extensions.get(STREAM_RESPONSE))
            raw = await pool.send(outgoing, request.extensions.get("timeout") or {}, streaming=streaming)
        except httpx.RequestError as exc:
            # httpx's client does this too; it helps callers that use the transport alone.
            exc.request = request
            raise
        return raw.as_httpx(request)

    async def send_raw(
        self, origin: Origin, outgoing: Outgoing, timeouts: Timeouts, *, streaming: bool = False
    ) -> RawResponse:
        """Send a request encoded by the caller; raises httpx's exceptions like `handle_async_request`.

        `timeouts` has httpx's keys (connect, read, write, pool; a missing one: no limit).
        With `streaming`, the response comes as soon as its head is in; read `stream` to
        its end or close it, as with `STREAM_RESPONSE`.
        """
        return await self._pool_at(origin).send(outgoing, timeouts, streaming=streaming)

    async def aclose(self) -> None:
        """Close every connection, idle or busy (as httpcore does); a later request opens new ones."""
        for pool in self._pools.values():
            pool.close()
        # asyncio releases a closed socket on the loop's next turn: let that happen before
        # returning, so the server sees the close now, as it does after httpcore's aclose.
        await asyncio.sleep(0)

    def _pool_at(self, origin: Origin) -> _Pool:
        pool = self._pools.get(origin)
        if pool is None:
            ssl_context = self._tls_context() if origin[0] == "https" else None
            pool = _Pool(origin, self._max_connections, self._keepalive_expiry, ssl_context)
            self._pools[origin] = pool
        return pool

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # The same verification as httpx's default transport: certifi's bundle, or
            # SSL_CERT_FILE / SSL_CERT_DIR, and HTTP/1.1 announced through ALPN.
            self._ssl_context = httpx.create_ssl_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context


def url_origin(url: httpx.URL) -> Origin:
    """(scheme, host, port): the pool a request goes to."""
    scheme = url.scheme
    if scheme not in DEFAULT_PORTS:
        if not scheme:
            raise httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol.")
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
    host = url.raw_host.decode("ascii")
    if not host:
        raise httpx.UnsupportedProtocol("Request URL is missing a host.")
    port = url.port or DEFAULT_PORTS[scheme]
    if port > MAX_PORT:
        # Caught here, as a bad URL: the socket layer would raise OverflowError, not an OSError.
        raise httpx.UnsupportedProtocol(f"Request URL has an invalid port {port}.")
    return scheme, host, port


class Outgoing(NamedTuple):
    """A request as bytes: the request line and headers (ending in a blank line) and the body.

    `close`: the request asks the server to close the connection after it. `expects_body`:
    False for HEAD, whose response has none. `replayable`: sending it twice is harmless,
    so it may be sent again when a reused connection dies after it went out.
    """

    head: bytes
    body: Body
    close: bool = False
    expects_body: bool = True
    replayable: bool = False


class RawResponse:
    """A response as the pool read it: status, headers and body, all as bytes.

    The body is `content` when it was read whole, or `stream` (an async iterable of
    bytes with `aclose()`) for a streamed response, whose `content` is empty. Content
    codings (gzip, ...) are not decoded here; httpx decodes them in `as_httpx`'s response.
    """

    __slots__ = ("content", "headers", "http_version", "reason", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        content: bytes = b"",
        *,
        reason: bytes = b"",
        http_version: bytes = b"HTTP/1.1",
        stream: httpx.AsyncByteStream | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.reason = reason
        self.http_version = http_version
        self.stream = stream

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header `name` (given in lower case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def as_httpx(self, request: httpx.Request) -> httpx.Response:
        # `stream=`, not `content=`: httpx would add a Content-Length header of its own.
        return httpx.Response(
            self.status,
            headers=self.headers,
            stream=self.stream or httpx.ByteStream(self.content),
            request=request,
            extensions={"http_version": self.http_version, "reason_phrase": self.reason},
        )


def encode_request(request: httpx.Request) -> Outgoing:
    raw = request.headers.raw
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path or b"/", b" HTTP/1.1\r\n"]
    close = False
    for name, value in raw:
        lines += (name, b": ", value, b"\r\n")
        if name.lower() == b"connection":
            close = b"close" in value.lower()
    lines.append(b"\r\n")
    head = b"".join(lines)
    # A CR or LF in a name or value would let it smuggle in headers of its own.
    if head.count(b"\n") != len(raw) + 2 or head.count(b"\r") != len(raw) + 2:
        raise httpx.LocalProtocolError("line breaks are not allowed in the request line or headers")
    return Outgoing(head, request_body(request), close, request.method != "HEAD", replayable(request))


def request_body(request: httpx.Request) -> Body:
    try:
        return request.content
    except httpx.RequestNotRead:
        stream = cast(AsyncIterable[bytes], request.stream)
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        return chunked_frames(stream) if chunked else stream


async def chunked_frames(stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        if chunk:
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"


class _StaleConnection(Exception):
    """A reused connection failed before the first response byte: send again on a new one."""


class _Pool:
    """The connections to one origin, and the requests waiting for one."""

    def __init__(
        self, origin: Origin, max_connections: int, keepalive_expiry: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._origin = origin
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: list[_Connection] = []
        self._connections: set[_Connection] = set()
        # Connections open, opening or idle: a waiter is handed one, or a slot to open one.
        self._slots_taken = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def send(self, outgoing: Outgoing, timeouts: Timeouts, *, streaming: bool = False) -> RawResponse:
        """Send on an idle connection (once more on a new one if it was stale) or on a new one.

        A streamed response's body gives the connection back when it ends; any other
        response has been read whole, and its connection is given back here.
        """
        conn = await self._acquire(timeouts.get("pool"))
        handed_over = False
        try:
            if conn is not None:
                try:
                    retryable = isinstance(outgoing.body, bytes)
                    response = await conn.exchange(outgoing, timeouts, retryable=retryable, streaming=streaming)
                    handed_over = streaming
                    return response
                except _StaleConnection:
                    self._forget(conn)
            conn = await self._connect(timeouts.get("connect"))
            response = await conn.exchange(outgoing, timeouts, retryable=False, streaming=streaming)
            handed_over = streaming
            return response
        finally:
            if not handed_over:
                self._release(conn)

    def release_streamed(self, conn: _Connection) -> None:
        """A streamed body's end (read through, or closed early): give its connection back."""
        self._release(conn)

    def close(self) -> None:
        # Busy connections give their slots back when their requests release them.
        self._slots_taken -= len(self._idle)
        self._idle.clear()
        connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

    async def _acquire(self, timeout: float | None) -> _Connection | None:
        """An idle connection, or None: the caller may open a new one."""
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and conn.idle_for() < self._keepalive_expiry:
                return conn
            self._forget(conn)
            self._slots_taken -= 1
        if self._slots_taken < self._max_connections:
            self._slots_taken += 1
            return None
        return await self._wait(timeout)

    async def _wait(self, timeout: float | None) -> _Connection | None:
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                conn = await waiter
        except BaseException as exc:
            # Handed a connection in the same instant as the timeout or a cancellation:
            # pass it on, or its slot is lost for good.
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())
            waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("timed out waiting for a free connection") from None
            raise
        if conn is not None and not conn.reusable:
            self._forget(conn)  # closed by the server since it was handed over; keep the slot
            return None
        return conn

    async def _connect(self, timeout: float | None) -> _Connection:
        _, host, port = self._origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as exc:  # before OSError: the kernel's ETIMEDOUT is one too
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection | None) -> None:
        """Give back a connection (None: only its slot) to the next waiter or the idle list."""
        if conn is not None and not (conn.reusable and conn in self._connections):
            self._forget(conn)
            conn = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._slots_taken -= 1
        else:
            conn.mark_idle()
            self._idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        self._connections.discard(conn)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool | None = None) -> None:
        self._loop = loop
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._reader: _ResponseReader | None = None
        self._lost = False
        self._closed = False
        self._reusable = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._idle_since = 0.0

    @property
    def reusable(self) -> bool:
        return self._reusable and not self._lost and not self._closed

    def idle_for(self) -> float:
        return self._loop.time() - self._idle_since

    def mark_idle(self) -> None:
        self._idle_since = self._loop.time()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.fail(httpx.ReadError("the connection was closed by the client"))
        if self._closed or self._transport is None:
            return
        self._closed = True
        if self._reusable:
            self._transport.close()
        else:
            # A half-finished exchange may have left unsent bytes: don't wait for them.
            self._transport.abort()
        self._reusable = False

    async def exchange(
        self, outgoing: Outgoing, timeouts: Timeouts, *, retryable: bool, streaming: bool = False
    ) -> RawResponse:
        """Send the request and read the whole response (with `streaming`: its head only)."""
        self._reusable = False  # until the response has been read to its end
        reader = self._reader = _ResponseReader(self._loop, expects_body=outgoing.expects_body, streaming=streaming)
        try:
            try:
                await self._write(outgoing.head, outgoing.body, timeouts.get("write"))
            except httpx.WriteError as exc:
                # Nothing the server could act on arrived: safe to send again.
                if retryable:
                    raise _StaleConnection from exc
                raise
            try:
                await self._read(reader, timeouts.get("read"), reader.head or reader.done)
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                # The request went out; the server may have acted on it before dying. Only
                # a request safe to repeat is sent again (Go's net/http rule): a chat
                # completion sent twice is paid for twice.
                if retryable and not reader.received and outgoing.replayable:
                    raise _StaleConnection from exc
                raise
        except BaseException:
            self.end_exchange(reader)
            raise
        if streaming:
            return reader.response(_StreamedBody(self, reader, timeouts.get("read"), outgoing.close))
        self.end_exchange(reader, reusable=reader.keep_alive and not outgoing.close)
        return reader.response()

    def end_exchange(self, reader: _ResponseReader, *, reusable: bool = False) -> None:
        self._reader = None
        # The parser holds the reader's callbacks: let refcounting free both now.
        del reader.parser
        self._reusable = reusable

    def release(self) -> None:
        """Back to the pool (a streamed response's body calls this when it ends)."""
        if self._pool is not None:
            self._pool.release_streamed(self)

    async def _write(self, head: bytes, body: Body, timeout: float | None) -> None:
        if self._lost or self._transport is None:
            raise httpx.WriteError("the connection was closed")
        if isinstance(body, bytes):
            # One write, so a small request leaves in one packet.
            self._transport.write(head + body)
        else:
            self._transport.write(head)
            async for chunk in body:
                self._transport.write(chunk)
                await self._drain(timeout)
        await self._drain(timeout)

    async def _drain(self, timeout: float | None) -> None:
        if not self._write_paused:
            return
        if self._lost:
            raise httpx.WriteError("the connection was closed")
        waiter = self._drain_waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        finally:
            self._drain_waiter = None

    async def _read(self, reader: _ResponseReader, timeout: float | None, until: asyncio.Future[None]) -> None:
        """Wait for `until`: the response's end, its head, or more of a streamed body."""
        if timeout is None:
            await until
            return
        # One timer per wait, pushed back by each arriving chunk, rather than a timeout
        # context per read: httpx's read timeout bounds silence, not the total.
        self._last_read = self._loop.time()
        self._read_timer = self._loop.call_later(timeout, self._check_read, reader, timeout, until)
        try:
            await until
        finally:
            self._read_timer.cancel()
            self._read_timer = None

    def _check_read(self, reader: _ResponseReader, timeout: float, until: asyncio.Future[None]) -> None:
        if until.done():
            return
        silent_for = self._loop.time() - self._last_read
        if silent_for < timeout - TIMER_SLACK_S:
            self._read_timer = self._loop.call_later(timeout - silent_for, self._check_read, reader, timeout, until)
            return
        reader.fail(httpx.ReadTimeout("timed out waiting for the response"))
        self.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            # Bytes nobody asked for (a late 408, say): the framing can't be trusted any more.
            self.close()
            return
        self._last_read = self._loop.time()
        reader.feed(data)

    def eof_received(self) -> bool:
        return False  # we never send after the server has finished: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._reader is not None:
            self._reader.connection_lost(exc)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(httpx.WriteError(str(exc) if exc else "the connection was closed"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)


class _Stray(Exception):
    """Bytes after the end of the response; stops the parser."""


class _ResponseReader:
    """Collects one response from httptools' callbacks and resolves `done` at its end."""

    # Defaults on the class: one is built per request, and most of these never change.
    received = False
    complete = False
    keep_alive = False
    status = 0
    reason = b""
    headers_complete = False
    http_version = b"HTTP/1.1"
    has_length = False
    has_transfer_encoding = False
    chunked = False
    close_requested = False
    until_eof = False

    def __init__(self, loop: asyncio.AbstractEventLoop, *, expects_body: bool, streaming: bool = False) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        # Streaming only: resolved when the head is in, and by every chunk of the body.
        self.head: asyncio.Future[None] | None = loop.create_future() if streaming else None
        self.more: asyncio.Future[None] | None = None
        self.expects_body = expects_body  # False for HEAD
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    def _restart(self) -> None:
        """Forget a 1xx informational response: the real one follows."""
        self.status = 0
        self.reason = b""
        self.headers = []
        self.has_length = self.has_transfer_encoding = self.chunked = self.close_requested = False

    def feed(self, data: bytes) -> None:
        self.received = True
        if self.done.done():
            self.keep_alive = False
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            if self.complete:  # _Stray: more bytes than the response
                self.keep_alive = False
            else:
                self.fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))

    def fail(self, exc: Exception) -> None:
        self.keep_alive = False
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        if not self.done.done():
            self.done.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        """Tell a streamed body's reader that there is more (or an end, or a failure)."""
        if self.more is not None and not self.more.done():
            self.more.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is None and self.headers_complete and self.until_eof:
            self._finish()  # a body without length ends when the server closes
        else:
            self.fail(disconnect_error(exc, self.received))

    def response(self, stream: httpx.AsyncByteStream | None = None) -> RawResponse:
        content = b"" if stream is not None else b"".join(self.chunks)
        return RawResponse(
            self.status, self.headers, content, reason=self.reason, http_version=self.http_version, stream=stream
        )

    def _finish(self) -> None:
        self.complete = True
        if not self.done.done():
            self.done.set_result(None)
        self._wake()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Stray
        if self.status:
            self._restart()

    def on_status(self, status: bytes) -> None:
        self.reason += status  # may arrive in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_complete:
            return  # chunked trailers: not exposed, like httpx's default transport
        self.headers.append((name, value))
        key = name.lower()
        if key == b"content-length":
            self.has_length = True
        elif key == b"transfer-encoding":
            self.has_transfer_encoding = True
            self.chunked = value.rstrip().lower().endswith(b"chunked")
        elif key == b"connection":
            self.close_requested = b"close" in value.lower()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:
            return  # informational: the real response follows
        self.headers_complete = True
        version = self.parser.get_http_version()
        self.http_version = b"HTTP/" + version.encode("ascii")
        has_body = self.expects_body and self.status not in NO_BODY_STATUSES
        self.until_eof = has_body and not self.chunked and (self.has_transfer_encoding or not self.has_length)
        self.keep_alive = version == "1.1" and not self.close_requested and not self.until_eof
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        if not self.expects_body:
            # llhttp doesn't know the request was a HEAD and would wait for a body.
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _Stray
        self.chunks.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self.headers_complete:
            self._finish()


class _StreamedBody(httpx.AsyncByteStream):
    """A response body read as it arrives; its connection goes back to the pool at its end."""

    def __init__(
        self, conn: _Connection, reader: _ResponseReader, read_timeout: float | None, close_requested: bool
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._read_timeout = read_timeout
        self._close_requested = close_requested
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._reader
        while True:
            if reader.chunks:
                data = b"".join(reader.chunks)
                reader.chunks.clear()
                yield data
            elif reader.done.done():
                reader.done.result()  # raises what ended the response early
                self._end(reusable=reader.keep_alive and not self._close_requested)
                return
            else:
                reader.more = asyncio.get_running_loop().create_future()
                await self._conn._read(reader, self._read_timeout, reader.more)

    async def aclose(self) -> None:
        """Drop the connection unless the whole body is in: the server sees the close.

        A body that has fully arrived leaves the connection in a clean state even when
        its last bytes were not read (a caller that stops at an SSE `[DONE]`), so it goes
        back to the pool.
        """
        if self._ended:
            return
        reader = self._reader
        if reader.done.done() and reader.done.exception() is None:
            self._end(reusable=reader.keep_alive and not self._close_requested)
            return
        self._conn.close()
        self._end(reusable=False)
        # Marks the failure `close()` just gave the reader as retrieved: nobody awaits it.
        self._reader.done.exception()

    def _end(self, *, reusable: bool) -> None:
        if self._ended:
            return
        self._ended = True
        self._conn.end_exchange(self._reader, reusable=reusable)
        self._conn.release()


def disconnect_error(exc: Exception | None, received: bool) -> httpx.TransportError:
    """What a closed connection means, in httpx's (and httpcore's) words."""
    if exc is not None:
        return httpx.ReadError(str(exc) or type(exc).__name__)
    if not received:
        return httpx.RemoteProtocolError("Server disconnected without sending a response.")
    return httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def environment_proxy_applies(url: str) -> bool:
    """Whether the environment's proxy settings may route `url` through a proxy.

    Reads what httpx reads (`urllib.request.getproxies()`: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
    NO_PROXY, any case). NO_PROXY is honoured only in the forms whose meaning httpx and curl
    agree on: `*`, an exact host or IP address, `example.com` (the domain and its
    subdomains) and `.example.com` (subdomains only). Anything else (ports, schemes, CIDR
    ranges) counts as "may be proxied", which leaves the decision to httpx's own transport.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False  # no transport can send it; the request fails either way
    proxies: dict[str, str] = urllib.request.getproxies()
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not no_proxy_covers(parsed.host, proxies.get("no", ""))


def no_proxy_covers(host: str, no_proxy: str) -> bool:
    host = host.lower()
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if entry == "*" or entry == host:
            return True
        if entry.startswith(".") and host.endswith(entry):
            return True
        if is_domain_name(entry) and host.endswith("." + entry):
            return True
    return False


def is_domain_name(entry: str) -> bool:
    plain = entry.replace(".", "").replace("-", "")
    return bool(plain) and plain.isalnum() and not plain.isdigit() and not entry.startswith(".")


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def replayable(request: httpx.Request) -> bool:
    """Whether sending `request` twice is harmless: an idempotent method or an idempotency key."""
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers
