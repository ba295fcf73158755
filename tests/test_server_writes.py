"""The web server's protocol sends a whole answer in one write: head and body together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from uvicorn.config import Config
from uvicorn.server import ServerState

from cascadeops.server import HeadHeldTransport, ReadDeadlineHttpToolsProtocol


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return f"extra {name}"


async def test_the_head_leaves_with_the_first_body_write() -> None:
    transport = RecordingTransport()
    held = HeadHeldTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.write(b"body")
    held.write(b"more")
    await asyncio.sleep(0)

    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]


async def test_a_head_whose_body_comes_later_goes_out_when_the_loop_turns() -> None:
    transport = RecordingTransport()
    held = HeadHeldTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    await asyncio.sleep(0)

    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    held.write(b"data: {}\n\n")
    assert transport.writes[-1] == b"data: {}\n\n"


async def test_closing_sends_the_head_first_and_the_rest_is_the_transports() -> None:
    transport = RecordingTransport()
    held = HeadHeldTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]

    held.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    held.close()

    assert transport.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    assert transport.closed
    assert held.get_extra_info("peername") == "extra peername"


class ConnectionTransport(RecordingTransport):
    """Enough of a connection's transport for uvicorn's protocol."""

    def get_extra_info(self, name: str) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_a_whole_answer_is_one_write_to_the_connection() -> None:
    """uvicorn's own protocol writes the head and the body apart: two segments, two wakeups."""

    async def app(scope: dict[str, object], receive: object, send: Callable[..., Awaitable[None]]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app=app, lifespan="off", access_log=False)
    config.load()
    protocol = ReadDeadlineHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = ConnectionTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.connection_lost(None)

    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nok")
