"""A counter that moves whenever routing configuration changes, shared by every worker.

Workers compare it with the version of the snapshot they hold (at most every
`CASCADEOPS_CONFIG_REFRESH_SECONDS`) instead of reading configuration per request. It lives
in the `ConfigState` row, and in production in Redis too, where workers read it; while Redis
is unreachable they read the row, so a saved change still reaches them (one extra reload
when they switch from one counter to the other).
"""

from __future__ import annotations

import logging

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F

from common import redis as shared_redis
from routing.models import ConfigState

REDIS_KEY = "cascadeops:config-version"
logger = logging.getLogger(__name__)


def discard_stale_connections() -> None:
    """Close database connections past their age or broken, as `request_finished` would.

    The routing API's handler sends no request signals (`routing.api.openai.asgi`), so its few
    database reads clean up for themselves. Never inside a transaction: that connection
    is in use (and in tests, it is the test's own).
    """
    if not connection.in_atomic_block:
        close_old_connections()


def bump() -> None:
    """Move the counter now; callers inside a transaction use `bump_on_commit`."""
    updated = ConfigState.objects.filter(id=1).update(version=F("version") + 1)
    if not updated:
        ConfigState.objects.get_or_create(id=1, defaults={"version": 1})
    if settings.REDIS_URL:
        try:
            shared_redis.sync_client().incr(REDIS_KEY)
        except (redis.ConnectionError, redis.TimeoutError):
            # The row moved: workers that read it while Redis is away see the change.
            logger.warning("Could not move the config version in Redis; workers see the change in the database")


def bump_on_commit() -> None:
    # Bumping before commit would let a worker reload and cache the old rows.
    transaction.on_commit(bump)


def _db_version() -> int:
    discard_stale_connections()
    return ConfigState.objects.filter(id=1).values_list("version", flat=True).first() or 0


async def current() -> int:
    """The counter's value as every worker sees it."""
    if settings.REDIS_URL:
        try:
            value = await shared_redis.async_client().get(REDIS_KEY)
            return int(value or 0)
        except (redis.ConnectionError, redis.TimeoutError):
            # Negative, so it never equals a version read from Redis: switching counters reloads.
            return -await sync_to_async(_db_version)() - 1
    return await sync_to_async(_db_version)()
