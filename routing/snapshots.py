"""ORM rows → engine snapshots, cached in the process and refreshed across workers.

The hot path never reads configuration from the database per request: it asks
`ConfigCache` for a policy snapshot or an API key, and the cache reloads only when the
shared config version (`routing.config_version`) has moved, checking it at most every
`CASCADEOPS_CONFIG_REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from . import config_version
from .config_version import discard_stale_connections
from .engine.ports import Provider
from .engine.types import ModelEndpoint, PolicySnapshot, ProviderKind, TaskRule, Tier
from .models import ApiKey, Policy
from .models import ModelEndpoint as EndpointRow
from .providers import build_provider

# Unknown key hashes are remembered so a client retrying a bad key costs no DB read; the
# cap stops a flood of random keys from growing the cache without bound.
MAX_CACHED_KEYS = 50_000
# A replaced provider's HTTP pool is closed this long after the swap, so requests still
# using it can finish.
PROVIDER_CLOSE_DELAY_S = 120.0


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the hot path needs to know about an API key."""

    id: int
    prefix: str
    policy_id: int
    team: str
    app: str
    expires_at: datetime | None
    revoked: bool

    def problem(self) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked:
            return "This API key has been revoked."
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "This API key has expired."
        return None


def endpoint_snapshot(row: EndpointRow) -> ModelEndpoint:
    return ModelEndpoint(
        id=row.id,
        name=row.name,
        provider_kind=ProviderKind(row.provider_kind),
        model_id=row.model_id,
        input_price_per_m=Decimal(row.input_price_per_m),
        output_price_per_m=Decimal(row.output_price_per_m),
        context_window=row.context_window,
        typical_latency_ms=row.typical_latency_ms,
        quality_prior=row.quality_prior,
        max_tokens=row.max_tokens,
        temperature=row.temperature,
        base_url=row.base_url,
        credentials_env=row.credentials_env,
        connect_timeout_s=row.connect_timeout_s,
        read_timeout_s=row.read_timeout_s,
        options=MappingProxyType(dict(row.options or {})),
    )


def policy_snapshot(policy: Policy) -> PolicySnapshot:
    """Translate a policy with prefetched tiers and rules into the engine's snapshot."""
    tiers = tuple(
        Tier(
            position=index,
            endpoint=endpoint_snapshot(tier.endpoint),
            threshold=tier.threshold,
            max_tokens=tier.max_tokens,
        )
        # An endpoint an operator disabled is skipped, so switching off a broken model
        # takes its tier out of every cascade at once.
        for index, tier in enumerate(sorted(policy.tiers.all(), key=lambda t: t.position))
        if tier.endpoint.enabled
    )
    rules = tuple(
        TaskRule(position=rule.position, category=rule.category, pattern=rule.pattern, first_tier=rule.first_tier)
        for rule in sorted(policy.task_rules.all(), key=lambda r: r.position)
    )
    return PolicySnapshot(
        id=policy.id,
        name=policy.name,
        version=policy.version,
        tiers=tiers,
        scorer=policy.scorer,
        max_escalations=policy.max_escalations,
        task_rules=rules,
        short_prompt_tokens=policy.short_prompt_tokens,
        optimisation_goal=policy.optimisation_goal,
    )


def load_policies() -> list[PolicySnapshot]:
    """Every enabled policy with at least one enabled tier, as snapshots."""
    discard_stale_connections()
    rows = Policy.objects.filter(enabled=True).prefetch_related("tiers__endpoint", "task_rules")
    snapshots = [policy_snapshot(p) for p in rows]
    return [s for s in snapshots if s.tiers]


def load_key(key_hash: str) -> KeyInfo | None:
    discard_stale_connections()
    row = ApiKey.objects.filter(key_hash=key_hash).first()
    if row is None:
        return None
    return KeyInfo(
        id=row.id,
        prefix=row.prefix,
        policy_id=row.policy_id,
        team=row.team,
        app=row.app,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
    )


class ConfigCache:
    """Policies, providers and API keys as one worker process sees them."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.checked_at = float("-inf")
        self.policies_by_id: dict[int, PolicySnapshot] = {}
        self.policies_by_name: dict[str, PolicySnapshot] = {}
        self.keys: dict[str, KeyInfo | None] = {}
        self.providers: dict[int, Provider] = {}
        self._lock = asyncio.Lock()

    async def ensure_fresh(self) -> None:
        """Reload if the shared version moved; checks it at most every refresh interval."""
        if time.monotonic() - self.checked_at < settings.CASCADEOPS_CONFIG_REFRESH_SECONDS:
            return
        async with self._lock:
            if time.monotonic() - self.checked_at < settings.CASCADEOPS_CONFIG_REFRESH_SECONDS:
                return
            # Read the version before the rows: a change landing in between moves the
            # version again, so the next check reloads once more instead of missing it.
            version = await config_version.current()
            if version != self.version:
                policies = await sync_to_async(load_policies)()
                self._install(version, policies)
            self.checked_at = time.monotonic()

    def _install(self, version: int, policies: list[PolicySnapshot]) -> None:
        self.version = version
        self.policies_by_id = {p.id: p for p in policies}
        self.policies_by_name = {p.name: p for p in policies}
        self.keys = {}
        self._refresh_providers(policies)

    def _refresh_providers(self, policies: list[PolicySnapshot]) -> None:
        wanted = {tier.endpoint.id: tier.endpoint for p in policies for tier in p.tiers}
        for endpoint_id, endpoint in wanted.items():
            current = self.providers.get(endpoint_id)
            if current is None or current.endpoint != endpoint:
                self.providers[endpoint_id] = build_provider(endpoint)
                if current is not None:
                    _close_later(current)

    async def key(self, key_hash: str) -> KeyInfo | None:
        """The key with this hash; unknown hashes are remembered until the next reload."""
        if key_hash not in self.keys:
            if len(self.keys) >= MAX_CACHED_KEYS:
                self.keys.clear()
            self.keys[key_hash] = await sync_to_async(load_key)(key_hash)
        return self.keys[key_hash]

    def invalidate(self) -> None:
        """Forget everything; the next request reloads (tests, and after a local save)."""
        self.version = None
        self.checked_at = float("-inf")


def _close_later(provider: Provider) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(PROVIDER_CLOSE_DELAY_S, lambda: loop.create_task(provider.aclose()))


config_cache = ConfigCache()
