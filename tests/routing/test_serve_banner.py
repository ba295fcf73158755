"""`serve`'s banner: printed once the server listens, and kept in var/ for later."""

from __future__ import annotations

import io
import socket
import threading

from routing.management.commands.serve import Command, banner_path, wait_for_port


def test_the_banner_is_written_to_var_as_well_as_printed(settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    out = io.StringIO()

    Command(stdout=out).print_banner({"host": "127.0.0.1", "port": 8123})

    kept = banner_path().read_text()
    assert "http://127.0.0.1:8123/" in kept
    assert str(banner_path()) in kept
    assert kept.strip() in out.getvalue()


def test_it_waits_for_the_server_to_listen() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        stop = threading.Event()
        wait_for_port("127.0.0.1", port, stop=stop, within_s=5)
        assert not stop.is_set()


def test_it_gives_up_waiting_when_asked_to_stop() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        stop = threading.Event()
        stop.set()
        wait_for_port("127.0.0.1", port, stop=stop, within_s=60)
