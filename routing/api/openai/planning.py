"""Which policy answers a request, and the tiers it may use: experiments, then selection.

A running experiment on the key (or its team) puts the end user in one arm, whose policy
replaces the key's; then `routed_policy` keeps only the tiers that can take the request
and starts on the one the policy's goal ranks first (docs/selection.md, docs/experiments.md).
"""

from __future__ import annotations

import dataclasses

from routing.config.experiments import arm_of, experiment_cache, experiment_for
from routing.config.snapshots import KeyInfo, config_cache
from routing.engine.selection import NoTierFits, routed_policy
from routing.engine.types import ChatRequest, PolicySnapshot
from routing.exceptions import RequestInvalid


async def plan_request(key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest) -> PolicySnapshot:
    """The policy snapshot this request is routed with; a 400 when no tier can take it."""
    policy = await experiment_policy(key, policy, chat)
    try:
        return routed_policy(chat, policy, first_tier=config_cache.first_tier_for(policy, chat))
    except NoTierFits as exc:
        raise RequestInvalid(str(exc), param="messages", code=exc.code) from exc


async def experiment_policy(key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest) -> PolicySnapshot:
    """The policy of the end user's arm when the key is in a running experiment, else `policy`."""
    experiments = await experiment_cache.current(config_cache.policies_by_id, config_cache.providers)
    experiment = experiment_for(experiments, key.id, key.team) if experiments else None
    if experiment is None:
        return policy
    arm = arm_of(experiment, chat.user)
    # An arm whose policy is disabled or has no usable tier leaves its users on the key's own.
    chosen = arm.pinned or config_cache.policies_by_id.get(arm.policy_id)
    return dataclasses.replace(chosen or policy, experiment_arm=arm.id if chosen else None)
