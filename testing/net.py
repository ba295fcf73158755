"""Loopback helpers the benches and the tests that start servers share."""

from __future__ import annotations

import socket
import time

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (a server started next may take it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout_s: float = 60.0) -> None:
    """Return once `url` answers anything at all; raise if it has not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")
