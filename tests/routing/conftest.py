"""Fixtures the routing tests share."""

from __future__ import annotations

import pytest

from routing.engine.types import PolicySnapshot
from routing.snapshots import KeyInfo, load_policies
from tests.factories import make_key, make_policy, replay_endpoints


@pytest.fixture
def context(db: None) -> tuple[KeyInfo, PolicySnapshot]:
    """A key and its two-tier replay policy ("demo"), as the hot path sees them."""
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.5), (gpt4, 1.0)])
    key, _ = make_key(policy)
    info = KeyInfo(
        id=key.id, prefix=key.prefix, policy_id=policy.id, team="growth", app="bot", expires_at=None, revoked=False
    )
    return info, load_policies()[0]
