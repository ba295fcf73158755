"""Start the whole stack: the ASGI web server, a Celery worker and Celery beat."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from routing.demo import credentials_path


class Command(BaseCommand):
    help = "Run web + worker + beat in the foreground; Ctrl-C stops all three."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=1)

    def handle(self, *args: Any, **options: Any) -> None:
        processes = [subprocess.Popen(cmd) for cmd in self.commands(options)]
        self.print_banner(options)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
            self.stderr.write("A process exited; stopping the others.")
        except KeyboardInterrupt:
            pass
        finally:
            stop_all(processes)

    def commands(self, options: dict[str, Any]) -> list[list[str]]:
        python = sys.executable
        web = [
            python, "-m", "uvicorn", "cascadeops.asgi:application",
            "--host", options["host"], "--port", str(options["port"]),
            "--workers", str(options["web_workers"]), "--no-access-log", "--lifespan", "off",
        ]  # fmt: skip
        # gossip/mingle/heartbeat need broadcast messaging, which the embedded file broker lacks.
        worker = [
            python, "-m", "celery", "-A", "cascadeops", "worker", "--loglevel", "INFO",
            "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        beat = [python, "-m", "celery", "-A", "cascadeops", "beat", "--loglevel", "INFO"]
        return [web, worker, beat]

    def print_banner(self, options: dict[str, Any]) -> None:
        url = f"http://{options['host']}:{options['port']}"
        lines = [f"CascadeOps is running at {url}/  (admin: {url}/admin/, API docs: {url}/api/docs/)"]
        if credentials_path().exists():
            saved = json.loads(credentials_path().read_text())
            lines += [
                f"  admin login:  {saved['username']} / {saved['password']}",
                f"  demo API key: {saved['api_key']}",
                f"  try:  OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY={saved['api_key']} "
                f"{sys.executable} manage.py replay_traffic --count 20",
            ]
        mode = "embedded (SQLite, in-process)" if settings.EMBEDDED else "production (Redis)"
        lines.append(f"  mode: {mode}; Ctrl-C stops web, worker and beat")
        self.stdout.write("\n".join(lines), self.style.SUCCESS)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
