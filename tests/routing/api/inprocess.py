"""One request through the lean ASGI handler in this process, with raw headers; its status and JSON body."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from routing.api.openai.asgi import HotPathHandler

ERROR_KEYS = {"message", "type", "param", "code"}


def call(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """POST `body` to `path`; from a sync test, so the views' ORM calls share its transaction."""
    return async_to_sync(_exchange)(path, body, headers)


async def _exchange(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    app = ApplicationCommunicator(HotPathHandler(), scope)
    await app.send_input({"type": "http.request", "body": body})
    start = await app.receive_output(timeout=30)
    chunks = []
    while True:
        message = await app.receive_output(timeout=30)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await app.send_input({"type": "http.disconnect"})
    await app.wait()
    content = b"".join(chunks)
    is_json = (b"content-type", b"application/json") in [(n.lower(), v) for n, v in start["headers"]]
    return start["status"], json.loads(content) if is_json else content


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {key}".encode())]


def is_openai_error(body: Any) -> bool:
    """`{"error": {"message", "type", "param", "code"}}`, with a message and a type."""
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == ERROR_KEYS
        and isinstance(error["message"], str)
        and bool(error["message"])
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
    )
