"""Embedded mode's files under `var/`, made by the entry points (settings only read them).

`manage.py`, the ASGI app and the Celery app call `prepare()` first: it makes the state
directory, a secret key for this checkout (when `SECRET_KEY` is not set), and points
prometheus_client's multiprocess mode at the metrics directory before anything imports it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def var_dir() -> Path:
    return Path(os.environ.get("CASCADEOPS_VAR_DIR") or BASE_DIR / "var")


def secret_key_file() -> Path:
    return var_dir() / "secret_key"


def metrics_dir() -> Path:
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or var_dir() / "metrics")


def prepare() -> None:
    var_dir().mkdir(parents=True, exist_ok=True)
    # The static root WhiteNoise warns without.
    Path(os.environ.get("STATIC_ROOT") or var_dir() / "static").mkdir(parents=True, exist_ok=True)
    if not os.environ.get("SECRET_KEY"):
        _make_secret_key(secret_key_file())
    metrics = metrics_dir()
    metrics.mkdir(parents=True, exist_ok=True)
    # prometheus_client reads this when it is first imported.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics))


def _make_secret_key(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(50))
