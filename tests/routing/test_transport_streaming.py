"""FastHTTPTransport's streamed responses (`extensions[STREAM_RESPONSE]`), against a scripted TCP server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from routing.providers.transport import STREAM_RESPONSE
from tests.routing.test_transport import ServerConnection, fast_client, scripted_server

STREAM = {STREAM_RESPONSE: True}
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST = b"0\r\n\r\n"


def gated(release: asyncio.Event, *, requests: int = 1) -> object:
    """Answers with a first event, then waits for `release`, then sends the rest."""

    async def handler(conn: ServerConnection) -> None:
        for _ in range(requests):
            if await conn.read_request() is None:
                return
            await conn.send(HEAD + frame(b"data: one\n\n"))
            await release.wait()
            await conn.send(frame(b"data: two\n\n") + LAST)

    return handler


async def test_a_streamed_body_arrives_piece_by_piece_while_the_server_is_still_sending() -> None:
    release = asyncio.Event()
    async with scripted_server(gated(release)) as server, fast_client() as client:
        request = client.build_request("GET", server.url, extensions=STREAM)
        response = await client.send(request, stream=True)
        pieces = response.aiter_raw()

        first = await anext(pieces)  # the server holds the rest until released
        release.set()
        rest = [piece async for piece in pieces]
        await response.aclose()

    assert response.status_code == 200
    assert first == b"data: one\n\n"
    assert b"".join(rest) == b"data: two\n\n"


async def test_a_stream_read_to_its_end_gives_its_connection_back_for_reuse() -> None:
    release = asyncio.Event()
    release.set()
    async with scripted_server(gated(release, requests=2)) as server, fast_client(max_connections=1) as client:
        for _ in range(2):
            async with client.stream("GET", server.url, extensions=STREAM) as response:
                body = await response.aread()
            assert body == b"data: one\n\ndata: two\n\n"

    assert server.connections == 1


async def test_closing_a_stream_early_drops_its_connection_and_frees_its_slot() -> None:
    hung_up = asyncio.Event()

    async def handler(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(HEAD + frame(b"data: one\n\n"))
        # The client closed mid-body: the next read sees the end of the connection.
        if await conn.reader.read() == b"":
            hung_up.set()

    async with scripted_server(handler) as server, fast_client(max_connections=1) as client:
        async with client.stream("GET", server.url, extensions=STREAM) as response:
            await anext(response.aiter_raw())
        async with asyncio.timeout(10):
            await hung_up.wait()
        # The one slot is free again: a second request gets a new connection.
        async with client.stream("GET", server.url, extensions=STREAM) as response:
            assert (await anext(response.aiter_raw())) == b"data: one\n\n"

    assert server.connections == 2


async def test_the_read_timeout_bounds_the_silence_between_pieces() -> None:
    async def stalls(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(HEAD + frame(b"data: one\n\n"))
        await asyncio.sleep(3600)

    timeout = httpx.Timeout(5.0, read=0.1)
    async with scripted_server(stalls) as server, fast_client(timeout=timeout) as client:
        response = await client.send(client.build_request("GET", server.url, extensions=STREAM), stream=True)
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"data: one\n\n"
        with pytest.raises(httpx.ReadTimeout):
            await anext(pieces)
        await response.aclose()


async def test_a_stream_the_server_cuts_off_fails_on_the_next_read() -> None:
    async def cuts(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(HEAD + frame(b"data: one\n\n"))
        conn.writer.close()

    async with scripted_server(cuts) as server, fast_client() as client:
        response = await client.send(client.build_request("GET", server.url, extensions=STREAM), stream=True)
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()
        await response.aclose()


async def test_an_error_response_to_a_streamed_request_can_be_read_whole() -> None:
    body = b'{"error": {"message": "no"}}'

    async def fails(conn: ServerConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with scripted_server(fails) as server, fast_client() as client:
        response = await client.send(client.build_request("GET", server.url, extensions=STREAM), stream=True)
        assert response.status_code == 500
        assert await response.aread() == body
