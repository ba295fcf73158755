"""ORM rows → engine snapshots, cached in the process and refreshed across workers.

The hot path never reads configuration from the database per request: it asks
`ConfigCache` for a policy snapshot or an API key, and the cache reloads only when the
shared config version (`routing.config.version`) has moved, checking it at most every
`CASCADEOPS_CONFIG_REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from billing.budgets.rules import BudgetRule, Requester, applicable
from billing.budgets.store import budget_rules_load
from billing.models import PriceBookEntry
from billing.pricing.book import Prices, price_in_force
from billing.pricing.services import prices_of
from routing.choices import ScorerKind, ScorerVersionKind
from routing.config import version as config_version
from routing.config.selection import LADDER_PREFETCH, every_tier, selection_inputs_load, with_selection
from routing.config.version import discard_stale_connections
from routing.engine.learned import LearnedModel, LearnedScorer
from routing.engine.ports import Provider, Scorer
from routing.engine.router import PromptRouter, first_tier_for
from routing.engine.scoring import SCORERS
from routing.engine.scoring import scorer_for as named_scorer
from routing.engine.types import (
    NO_GATE,
    ChatRequest,
    EndpointSnapshot,
    GateSnapshot,
    PolicySnapshot,
    ProviderType,
    TaskRuleSnapshot,
    Tier,
)
from routing.models import ApiKey, Policy, PolicyTier, ScorerVersion
from routing.models import ModelEndpoint as EndpointRow
from routing.models.validators import credentials_allow_list
from routing.providers import build_provider

logger = logging.getLogger(__name__)

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
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def problem(self) -> str | None:
        """Why this key may not be used now, or None."""
        if self.revoked:
            return "This API key has been revoked."
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "This API key has expired."
        return None


def endpoint_snapshot(row: EndpointRow, at: datetime, *, with_fallback: bool = True) -> EndpointSnapshot:
    """The endpoint with the prices in force at `at`: the price book's, else its own fields.

    Its fallback (one level deep: a fallback's own fallback is not followed) comes along
    when it is enabled.
    """
    price = price_in_force(endpoint_prices(row), at)
    fallback_row = row.fallback_endpoint if with_fallback else None
    fallback = (
        endpoint_snapshot(fallback_row, at, with_fallback=False)
        if fallback_row is not None and fallback_row.enabled and fallback_row.id != row.id
        else None
    )
    return EndpointSnapshot(
        id=row.id,
        name=row.name,
        provider_kind=ProviderType(row.provider_kind),
        model_id=row.model_id,
        input_price_per_m=price.input_per_m if price else Decimal(row.input_price_per_m),
        output_price_per_m=price.output_per_m if price else Decimal(row.output_price_per_m),
        cached_input_price_per_m=price.cached_input_per_m if price else row.cached_input_price_per_m,
        price_version=price.version if price else 0,
        context_window=row.context_window,
        typical_latency_ms=row.typical_latency_ms,
        quality_prior=row.quality_prior,
        max_tokens=row.max_tokens,
        temperature=row.temperature,
        base_url=row.base_url,
        credentials_env=row.credentials_env,
        credentials_allowed=credentials_allow_list(),
        connect_timeout_s=row.connect_timeout_s,
        read_timeout_s=row.read_timeout_s,
        options=MappingProxyType(dict(row.options or {})),
        max_retries=row.max_retries,
        breaker_failure_rate=row.breaker_failure_rate,
        breaker_min_requests=row.breaker_min_requests,
        breaker_window_s=row.breaker_window_s,
        breaker_open_s=row.breaker_open_s,
        fallback=fallback,
        supports_tools=row.supports_tools,
        supports_json=row.supports_json,
        supports_images=row.supports_images,
    )


def endpoint_prices(row: EndpointRow) -> list[Prices]:
    """The endpoint's price-book entries (prefetched as `prices`)."""
    return [prices_of(entry) for entry in row.prices.all()]


def policy_snapshot(policy: Policy, at: datetime | None = None) -> PolicySnapshot:
    """Translate a policy with prefetched tiers, endpoints' prices and rules into the engine's snapshot."""
    at = at or timezone.now()
    tiers = tuple(
        Tier(
            position=index,
            endpoint=endpoint_snapshot(tier.endpoint, at),
            threshold=tier.threshold,
            max_tokens=tier.max_tokens,
            gate=gate_snapshot(tier, at),
        )
        # An endpoint an operator disabled is skipped, so switching off a broken model
        # takes its tier out of every cascade at once.
        for index, tier in enumerate(sorted(policy.tiers.all(), key=lambda t: t.position))
        if tier.endpoint.enabled
    )
    rules = tuple(
        TaskRuleSnapshot(
            position=rule.position, category=rule.category, pattern=rule.pattern, first_tier=rule.first_tier
        )
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
        cache_ttl_s=policy.cache_ttl_s,
        semantic_cache=policy.semantic_cache,
        semantic_threshold=policy.semantic_threshold,
        semantic_multi_turn=policy.semantic_multi_turn,
        semantic_verify_rate=policy.semantic_verify_rate,
        unknown_fields=policy.unknown_fields,
        tools_first_tier=policy.tools_first_tier,
        embeddings=embeddings_snapshot(policy, at),
    )


def embeddings_snapshot(policy: Policy, at: datetime) -> EndpointSnapshot | None:
    """The policy's embeddings endpoint, when it has an enabled one."""
    row = policy.embeddings_endpoint
    return endpoint_snapshot(row, at, with_fallback=False) if row is not None and row.enabled else None


def gate_snapshot(tier: PolicyTier, at: datetime) -> GateSnapshot:
    """The tier's quality gate; disabled peers and judges are left out, as disabled tiers are."""
    peers = tuple(endpoint_snapshot(p, at) for p in tier.peers.all() if p.enabled)
    judge = tier.judge if tier.judge is not None and tier.judge.enabled else None
    if tier.samples <= 1 and not peers and judge is None:
        return NO_GATE
    return GateSnapshot(
        samples=tier.samples,
        sample_temperature=tier.sample_temperature,
        extractor=tier.extractor,
        peers=peers,
        judge=None if judge is None else endpoint_snapshot(judge, at),
    )


def load_policies(at: datetime | None = None) -> list[PolicySnapshot]:
    """Every enabled policy with at least one enabled tier, as snapshots priced at `at` (now)."""
    discard_stale_connections()
    rows = Policy.objects.filter(enabled=True).prefetch_related(
        "tiers__endpoint__prices",
        "tiers__endpoint__fallback_endpoint__prices",
        "tiers__peers__prices",
        "tiers__peers__fallback_endpoint__prices",
        "tiers__judge__prices",
        "tiers__judge__fallback_endpoint__prices",
        "task_rules",
        *LADDER_PREFETCH,
        "embeddings_endpoint__prices",
    )
    at = at or timezone.now()
    inputs = selection_inputs_load()
    snapshots = [with_selection(policy_snapshot(p, at), p, inputs, at, endpoint_snapshot) for p in rows]
    return [s for s in snapshots if s.tiers]


def next_price_change(after: datetime) -> datetime | None:
    """When a scheduled price-book entry next takes effect: snapshots must be rebuilt then."""
    scheduled = PriceBookEntry.objects.filter(effective_from__gt=after)
    at: datetime | None = scheduled.aggregate(at=Min("effective_from"))["at"]
    return at


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
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
    )


@dataclass(frozen=True, slots=True)
class PolicyQuality:
    """A policy's quality-loop settings: text sampling, shadow evaluation, its learned scorer."""

    sample_rate: float = 0.0
    shadow_rate: float = 0.0
    scorer_version: int | None = None  # the active learned ScorerVersion's id
    scorer: Scorer | None = None
    router_version: int | None = None  # the active prompt-only router's ScorerVersion id
    router: PromptRouter | None = None
    router_threshold: float | None = None
    # Set when the policy keeps prompts and answers for the request log: the compiled redactions.
    keep_text: tuple[re.Pattern[str], ...] | None = None


def text_redactions(patterns: str) -> tuple[re.Pattern[str], ...]:
    """A policy's redaction patterns, one per line, compiled (validated when saved)."""
    return tuple(re.compile(line) for line in patterns.splitlines() if line.strip())


def load_quality(current: Mapping[int, PolicyQuality]) -> dict[int, PolicyQuality]:
    """Every enabled policy's sampling rates and active learned scorer, by policy id.

    A version already in `current` is reused; only newly activated models are read and
    deserialised. A model that fails to load is logged and skipped, so its policy scores
    with the heuristic instead of failing every request.
    """
    discard_stale_connections()
    loaded = {q.scorer_version: q.scorer for q in current.values() if q.scorer_version is not None}
    active = dict(
        ScorerVersion.objects.filter(active=True, kind=ScorerVersionKind.LEARNED, policy__enabled=True).values_list(
            "policy_id", "id"
        )
    )
    missing = [version for version in active.values() if version not in loaded]
    for version, model in ScorerVersion.objects.filter(id__in=missing).values_list("id", "model"):
        loaded[version] = _learned_scorer(version, model)
    routers = _active_routers(current)
    rows = Policy.objects.filter(enabled=True).values_list(
        "id", "sample_rate", "shadow_rate", "router_threshold", "store_text", "text_redact_patterns"
    )
    quality = {}
    for policy_id, sample_rate, shadow_rate, router_threshold, store_text, redact in rows:
        active_version = active.get(policy_id)
        scorer = loaded.get(active_version) if active_version is not None else None
        router_version, router = routers.get(policy_id, (None, None))
        keep_text = text_redactions(redact) if store_text else None
        quality[policy_id] = PolicyQuality(
            sample_rate, shadow_rate, active_version, scorer, router_version, router, router_threshold, keep_text
        )
    return quality


def _active_routers(current: Mapping[int, PolicyQuality]) -> dict[int, tuple[int, PromptRouter | None]]:
    """Each enabled policy's active prompt-only router, reusing the ones already loaded."""
    loaded = {q.router_version: q.router for q in current.values() if q.router_version is not None}
    active = dict(
        ScorerVersion.objects.filter(active=True, kind=ScorerVersionKind.ROUTER, policy__enabled=True).values_list(
            "policy_id", "id"
        )
    )
    missing = [version for version in active.values() if version not in loaded]
    for version, model in ScorerVersion.objects.filter(id__in=missing).values_list("id", "model"):
        loaded[version] = _router(version, model)
    return {policy_id: (version, loaded.get(version)) for policy_id, version in active.items()}


def _router(version: int, model: object) -> PromptRouter | None:
    try:
        return PromptRouter.from_dict(model)  # type: ignore[arg-type]
    except Exception:
        logger.exception("Router version %s does not load; its policy starts where its task rules say", version)
        return None


def _learned_scorer(version: int, model: object) -> Scorer | None:
    try:
        return LearnedScorer(LearnedModel.from_dict(model))  # type: ignore[arg-type]
    except Exception:
        logger.exception("Scorer version %s does not load; its policy scores with the heuristic", version)
        return None


@dataclass(frozen=True)
class LoadedConfig:
    policies: list[PolicySnapshot]
    quality: dict[int, PolicyQuality]
    budgets: list[BudgetRule]
    prices_change_at: datetime | None


def load_config(current_quality: Mapping[int, PolicyQuality]) -> LoadedConfig:
    """Everything the hot path needs from the database, read in one go (one thread hop)."""
    # One instant for both: prices read at one moment and the next change looked up from
    # a later one would miss a change that took effect in between, until the next edit.
    at = timezone.now()
    return LoadedConfig(
        policies=load_policies(at),
        quality=load_quality(current_quality),
        budgets=budget_rules_load(),
        prices_change_at=next_price_change(at),
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
        self.quality: dict[int, PolicyQuality] = {}
        self.budgets: list[BudgetRule] = []
        # When a scheduled price takes effect: the snapshots are rebuilt then.
        self.prices_change_at: datetime | None = None
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
            if version != self.version or self._prices_changed():
                loaded = await sync_to_async(load_config)(self.quality)
                self.prices_change_at, self.budgets, self.quality = (
                    loaded.prices_change_at,
                    loaded.budgets,
                    loaded.quality,
                )
                self._install(version, loaded.policies)
            self.checked_at = time.monotonic()

    def _install(self, version: int, policies: list[PolicySnapshot]) -> None:
        self.version = version
        self.policies_by_id = {p.id: p for p in policies}
        self.policies_by_name = {p.name: p for p in policies}
        self.keys = {}
        self._refresh_providers(policies)

    def _refresh_providers(self, policies: list[PolicySnapshot]) -> None:
        wanted = {e.id: e for p in policies for tier in every_tier(p) for e in tier_endpoints(tier)}
        fallbacks = {e.fallback.id: e.fallback for e in list(wanted.values()) if e.fallback is not None}
        embedders = {p.embeddings.id: p.embeddings for p in policies if p.embeddings is not None}
        wanted = embedders | fallbacks | wanted
        for endpoint_id, endpoint in wanted.items():
            current = self.providers.get(endpoint_id)
            if current is None or current.endpoint != endpoint:
                self.providers[endpoint_id] = build_provider(endpoint)
                if current is not None:
                    _close_later(current)

    def scorer_for(self, policy: PolicySnapshot) -> Scorer:
        """The scorer for `policy`'s answers.

        "learned" is the policy's active learned version, or the heuristic until one
        exists; any other name is the engine's scorer of that name.
        """
        if policy.scorer == ScorerKind.LEARNED:
            quality = self.quality.get(policy.id)
            return quality.scorer if quality and quality.scorer else SCORERS[ScorerKind.HEURISTIC]
        return named_scorer(policy.scorer)

    def first_tier_for(self, policy: PolicySnapshot, chat: ChatRequest) -> int | None:
        """Where the policy's prompt-only router starts `chat`; None leaves it to the task rules."""
        quality = self.quality.get(policy.id)
        if quality is None or quality.router is None or quality.router_threshold is None:
            return None
        return first_tier_for(quality.router, chat.prompt, threshold=quality.router_threshold, tiers=len(policy.tiers))

    def _prices_changed(self) -> bool:
        return self.prices_change_at is not None and timezone.now() >= self.prices_change_at

    def budgets_for(self, key: KeyInfo, policy: PolicySnapshot, end_user: str) -> list[BudgetRule]:
        """The budgets a request counts against (none: the request touches no counter)."""
        if not self.budgets:
            return []
        who = Requester(team=key.team, app=key.app, api_key_prefix=key.prefix, policy=policy.name, end_user=end_user)
        return applicable(self.budgets, who)

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


def tier_endpoints(tier: Tier) -> tuple[EndpointSnapshot, ...]:
    """Every endpoint a tier may call: its own, its gate's peers and judge."""
    judge = () if tier.gate.judge is None else (tier.gate.judge,)
    return (tier.endpoint, *tier.gate.peers, *judge)


def _close_later(provider: Provider) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(PROVIDER_CLOSE_DELAY_S, lambda: loop.create_task(provider.aclose()))


config_cache = ConfigCache()
