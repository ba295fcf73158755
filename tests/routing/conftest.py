"""Fixtures the routing tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing.config.snapshots import KeyInfo, load_policies
from routing.engine.types import PolicySnapshot
from testing.factories import make_key, make_policy, replay_endpoints
from testing.upstream import UpstreamServer, running_upstream


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


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """A local OpenAI-compatible upstream with the default behaviour, counting its calls."""
    with running_upstream() as server:
        yield server
