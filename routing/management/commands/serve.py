"""Start the whole stack: the ASGI web server, a Celery worker, Celery beat and a record flusher.

On SIGTERM or SIGINT it stops them in the order that loses nothing: the web server first
(requests in flight finish within `CASCADEOPS_SHUTDOWN_GRACE_SECONDS`), then a flush of
every buffered record, then the worker and beat. It exits 0 when asked to stop. A child
that dies by itself is started again after a backoff (1 s, doubling to 60 s; back to 1 s once
it has run a minute), and the others keep running. See docs/hotpath.md and docs/embedded.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.demo import credentials_path
from routing.management.commands.run_recorder import drain

logger = logging.getLogger(__name__)

# Beyond the grace period, how long a child may take to exit before it is killed.
EXIT_MARGIN_S = 10.0
# How often the recorder beside the web server looks for new records when it found none.
RECORDER_INTERVAL_S = 0.1
# The quickstart's live charts follow a request within 2 s: records become flushable within
# a quarter second and the dashboard ticks twice a second (unless the environment says
# otherwise). Worst case: segment 0.25 + poll 0.1 + flush + tick 0.5 + drawing.
LIVE_DEFAULTS = {"CASCADEOPS_RECORD_SEGMENT_SECONDS": "0.25", "CASCADEOPS_DASHBOARD_TICK_SECONDS": "0.5"}
# How long the banner waits for the web server to listen before it is printed anyway.
BANNER_WAIT_S = 60.0
# A child that dies is started again after a backoff that doubles with each quick death.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
# A child that ran this long counts as healthy again: its next death restarts it after 1 s.
HEALTHY_AFTER_S = 60.0
Process = subprocess.Popen[bytes]


@dataclass
class Child:
    """One supervised process: started, watched, and started again when it dies."""

    name: str
    command: list[str]
    process: Process = field(init=False)
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.process = start(self.command)
        self.started_at, self.restart_at = time.monotonic(), None
        logger.info("%s started (pid %d)", self.name, self.process.pid)

    def watch(self, now: float) -> None:
        """Schedule a restart when the process has died; start it when its time has come."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        status = self.process.poll()
        if status is None:
            return
        if now - self.started_at >= HEALTHY_AFTER_S:
            self.quick_deaths = 0
        delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2**self.quick_deaths)
        self.quick_deaths += 1
        self.restart_at = now + delay
        logger.error(
            "%s (pid %d) exited with status %s; starting it again in %.0f s",
            self.name, self.process.pid, status, delay,
        )  # fmt: skip


class Command(BaseCommand):
    help = "Run web + worker + beat + record flusher in the foreground; Ctrl-C (or SIGTERM) stops them in order."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=1)
        parser.add_argument(
            "--worker-log-level",
            default="WARNING",
            help="Celery worker's and beat's log level; at INFO they log every flush and tick.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["web_workers"] > 1 and not settings.REDIS_URL:
            # Without Redis, rate limits, breakers and the cache live in each process: N
            # workers would each allow a key its whole limit.
            raise CommandError("More than one web worker needs REDIS_URL (shared rate limits, breakers, cache).")
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        metrics_dir_empty(settings.CASCADEOPS_METRICS_DIR)
        for name, value in LIVE_DEFAULTS.items():
            os.environ.setdefault(name, value)  # read by the children's settings
        names = ("web", "worker", "beat", "recorder")
        children = [Child(name, cmd) for name, cmd in zip(names, self.commands(options), strict=True)]
        for child in children:
            child.start()
        # Last, once the server listens: the login must not scroll away under start-up logs.
        wait_for_port(options["host"], options["port"], stop=stopping, within_s=BANNER_WAIT_S)
        self.print_banner(options)
        while not stopping.wait(0.5):
            for child in children:
                child.watch(time.monotonic())
        web, worker, beat, recorder = (child.process for child in children)
        stop_in_order(web, others=[recorder, worker, beat])

    def commands(self, options: dict[str, Any]) -> list[list[str]]:
        python = sys.executable
        grace = max(1, round(settings.CASCADEOPS_SHUTDOWN_GRACE_SECONDS))
        web = [
            python, "-m", "uvicorn", "cascadeops.asgi:application",
            "--host", options["host"], "--port", str(options["port"]),
            "--workers", str(options["web_workers"]), "--no-access-log", "--lifespan", "on",
            "--http", "cascadeops.server:ReadDeadlineHttpToolsProtocol", "--loop", "uvloop",
            "--timeout-graceful-shutdown", str(grace),
            "--timeout-keep-alive", str(settings.CASCADEOPS_KEEP_ALIVE_SECONDS),
            *concurrency_limit(),
        ]  # fmt: skip
        # gossip/mingle/heartbeat need broadcast messaging, which the embedded SQLite broker lacks.
        worker = [
            python, "-m", "celery", "-A", "cascadeops", "worker",
            "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", options["worker_log_level"],
        ]  # fmt: skip
        beat = [python, "-m", "celery", "-A", "cascadeops", "beat", "--loglevel", options["worker_log_level"]]
        # Records reach the database (and so the live charts) within a fraction of a second,
        # not at beat's next 2-second flush: the quickstart's charts follow requests within 2 s.
        recorder = [
            python, str(Path(settings.BASE_DIR) / "manage.py"), "run_recorder",
            "--interval", str(RECORDER_INTERVAL_S),
        ]  # fmt: skip
        return [web, worker, beat, recorder]

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
        lines.append(f"  mode: {mode}; metrics: {url}/metrics; Ctrl-C stops web, worker and beat")
        lines.append(f"  (this banner is also in {banner_path()})")
        banner = "\n".join(lines)
        banner_path().write_text(banner + "\n")
        self.stdout.write(banner, self.style.SUCCESS)


def banner_path() -> Path:
    return Path(settings.VAR_DIR) / "banner.txt"


def wait_for_port(host: str, port: int, *, stop: threading.Event, within_s: float) -> None:
    """Return once `host:port` accepts a connection, `stop` is set, or `within_s` passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            stop.wait(0.1)


def concurrency_limit() -> list[str]:
    """uvicorn answers 503 to connections beyond `CASCADEOPS_MAX_CONCURRENCY` per worker (0: no limit)."""
    limit = settings.CASCADEOPS_MAX_CONCURRENCY
    return ["--limit-concurrency", str(limit)] if limit > 0 else []


def start(command: list[str]) -> Process:
    # A group of its own: the terminal's Ctrl-C must not reach the children before the
    # web server has drained, or the worker could stop first.
    return subprocess.Popen(command, process_group=0)


def metrics_dir_empty(directory: Path) -> None:
    """Start the counters from zero: the files are those of the previous run's workers."""
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def stop_in_order(web: Process, *, others: list[Process]) -> None:
    """Web first (drains its requests), then a final record flush, then the worker and beat."""
    grace = settings.CASCADEOPS_SHUTDOWN_GRACE_SECONDS
    stop(web, within_s=grace + EXIT_MARGIN_S)
    try:
        flushed = drain(batch=5_000, within_s=grace)
        logger.info("Flushed %d buffered records on the way out", flushed)
    except Exception:
        # They stay in the durable buffer; the next start's flusher stores them.
        logger.exception("The final record flush failed; the records wait in the buffer")
    for process in others:
        terminate(process)
    for process in others:
        stop(process, within_s=grace + EXIT_MARGIN_S)


def terminate(process: Process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)


def stop(process: Process, *, within_s: float) -> None:
    terminate(process)
    try:
        process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        logger.error("Process %s did not stop within %.0f s; killing it", process.pid, within_s)
        process.kill()
        process.wait()
