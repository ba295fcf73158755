"""A request's rate limits and budget hold in one round trip to Redis. See docs/limits.md."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from redis.commands.core import AsyncScript

from billing.budgets.rules import ADMIT_LUA, Admitted, BudgetRule, BudgetStore, WorstCase
from billing.budgets.store import SEED_ATTEMPTS, AdmitCall, RedisBudgetStore, counters_lost
from common import redis as shared_redis
from common.lua import lua_script
from routing.config.snapshots import KeyInfo
from routing.engine.types import ChatRequest, PolicySnapshot
from routing.limits import ratelimit

logger = logging.getLogger(__name__)


def as_function(name: str, script: str) -> str:
    """A whole script as a Lua function of its own KEYS and ARGV."""
    return f"local function {name}(KEYS, ARGV)\n{script}\nend\n"


ADMISSION_LUA = (
    as_function("rate_charge", ratelimit.CHARGE_LUA)
    + as_function("budget_admit", ADMIT_LUA)
    + lua_script("routing.limits", "admission")
)

_scripts: weakref.WeakKeyDictionary[object, AsyncScript] = weakref.WeakKeyDictionary()


def _script() -> AsyncScript:
    client = shared_redis.async_client()
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(ADMISSION_LUA)
    return script


async def admit(
    key: KeyInfo,
    policy: PolicySnapshot,
    chat: ChatRequest,
    store: BudgetStore,
    rules: Sequence[BudgetRule],
    *,
    worst: WorstCase,
    hold_id: str,
    now: datetime,
) -> Admitted:
    """Charge `key`'s rate limits (`RateLimited`), then hold the budgets (`BudgetExhausted`).

    In one script when both live in Redis; else, or when that script fails, one after the
    other, each store degrading as it does on its own (docs/redis-outage.md).
    """
    charges = ratelimit.charges_for(key, policy, chat)
    limits = ratelimit.limit_store()
    # While this worker skips an unreachable Redis, the steps apart degrade as documented.
    if (
        charges
        and isinstance(limits, ratelimit.RedisLimitStore)
        and isinstance(store, RedisBudgetStore)
        and not shared_redis.is_down()
    ):
        try:
            return await _in_one_step(key, charges, limits, store, AdmitCall.of(rules, worst, hold_id, now), now)
        except (redis.RedisError, OSError):  # TimeoutError is an OSError
            logger.warning("The combined admission failed; charging the rate limits and the budgets apart")
    await ratelimit.admit(key, policy, chat)
    return await store.admit(rules, worst, hold_id, now)


async def _in_one_step(
    key: KeyInfo,
    charges: Sequence[ratelimit.Charge],
    limits: ratelimit.RedisLimitStore,
    store: RedisBudgetStore,
    budgets: AdmitCall,
    now: datetime,
) -> Admitted:
    keys = [c.counter for c in charges] + budgets.keys
    args: list[Any] = [len(charges), *ratelimit.charge_args(charges), *budgets.args]
    for _ in range(SEED_ATTEMPTS):
        # Bounded as a rate-limit step is: a Redis that stops answering must not hang the request.
        async with asyncio.timeout(ratelimit.STORE_TIMEOUT_S):
            charged, held = await _script()(keys=keys, args=args)
        if await store.seeded_missing(held, budgets.periods, budgets.keys, now):
            continue
        ratelimit.admitted(key, charges, ratelimit.decision_from(charged, charges), limits)
        return budgets.admitted(held)
    raise counters_lost(budgets.periods)
