"""uvicorn's HTTP protocol with a deadline for reading each request, and whole answers in one write.

uvicorn times out idle keep-alive connections but not a request that is being read: a client
that sends half its headers, or a body slower than it announced, holds its connection (and,
for a body, the request's task) for as long as it likes. Here each request, headers and body,
must arrive within `CASCADEOPS_REQUEST_READ_TIMEOUT_SECONDS` of its first byte (of the
connection, for the first request); then the connection is closed, with a 408 if no response
has started. uvicorn writes a response's head as soon as the app starts it and the body
after; here the head waits for the body's first write (or the end of the event loop's turn),
so that an answer leaves in one segment: one send and one wakeup of the client, not two.
`manage.py serve` runs uvicorn with it (`--http cascadeops.server:…`). See docs/hotpath.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class ReadDeadlineHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that closes a connection whose request is not read in time."""

    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_deadline()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The cycle's task is created but has not run yet: it writes only through the holder.
        if self.cycle is not None:
            self.cycle.transport = HeadHeldTransport(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_read_deadline()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        timeout_s = float(settings.CASCADEOPS_REQUEST_READ_TIMEOUT_SECONDS)
        if timeout_s > 0:
            self._read_deadline = self.loop.call_later(timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        # A websocket upgrade hands the transport to another protocol: no longer ours to close.
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        logger.info("Closing a connection from %s: its request was not read in time", self.client)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(TIMED_OUT)
        self.transport.close()


class HeadHeldTransport:
    """A connection's transport as one response's cycle sees it: the first write (uvicorn's
    status line and headers) is held until the next one, which carries it along, or until
    the loop's turn ends, so that a head whose body comes later still goes out at once."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self._head = data
            self._loop.call_soon(self.flush)
            return
        head, self._head = self._head, None
        self._transport.write(head + data if head is not None else data)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
