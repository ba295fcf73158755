"""Test data: factory_boy factories for the registry, plus helpers for policies and keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.utils import timezone
from factory import declarations
from factory.django import DjangoModelFactory

from routing.choices import AttemptOutcome, ProviderKind, RecordStatus
from routing.models import ApiKey, ModelEndpoint, Policy, RequestAttempt, RequestRecord
from routing.policies import services


class ModelEndpointFactory(DjangoModelFactory[ModelEndpoint]):
    class Meta:
        model = ModelEndpoint
        django_get_or_create = ("name",)

    name = declarations.Sequence(lambda n: f"endpoint-{n}")  # type: ignore[no-untyped-call]  # factory_boy: unannotated
    provider_kind = ProviderKind.REPLAY
    model_id = "mixtral"
    input_price_per_m = Decimal("0.60")
    output_price_per_m = Decimal("0.60")


def replay_endpoints() -> tuple[ModelEndpoint, ModelEndpoint]:
    """The demo's two tiers: replayed Mixtral (cheap) and replayed GPT-4 (strong)."""
    mixtral = ModelEndpointFactory.create(
        name="replay-mixtral", model_id="mixtral", input_price_per_m=Decimal("0.60"), output_price_per_m=Decimal("0.60")
    )
    gpt4 = ModelEndpointFactory.create(
        name="replay-gpt-4", model_id="gpt-4", input_price_per_m=Decimal("10.00"), output_price_per_m=Decimal("30.00")
    )
    return mixtral, gpt4


def openai_endpoint(name: str, base_url: str, model_id: str, **fields: Any) -> ModelEndpoint:
    defaults: dict[str, Any] = {"read_timeout_s": 2.0, "connect_timeout_s": 1.0}
    return ModelEndpointFactory.create(
        name=name,
        provider_kind=ProviderKind.OPENAI_COMPAT,
        base_url=base_url,
        model_id=model_id,
        **{**defaults, **fields},
    )


def make_policy(name: str, tiers: Sequence[tuple[ModelEndpoint, float]], **fields: Any) -> Policy:
    return services.policy_create(name=name, tiers=tiers, **fields)


def make_key(policy: Policy, *, team: str = "growth", app: str = "support-bot", **fields: Any) -> tuple[ApiKey, str]:
    return services.api_key_create(name=f"{app} key", policy=policy, team=team, app=app, **fields)


class RequestRecordFactory(DjangoModelFactory[RequestRecord]):
    class Meta:
        model = RequestRecord

    id = declarations.LazyFunction(uuid.uuid4)  # type: ignore[no-untyped-call]  # factory_boy: unannotated
    created = declarations.LazyFunction(timezone.now)  # type: ignore[no-untyped-call]  # factory_boy: unannotated
    team = "growth"
    app = "support-bot"
    policy_name = "default"
    policy_version = 1
    task_category = "faq"
    status = RecordStatus.ANSWERED
    final_tier = 0
    final_model = "mixtral"
    input_tokens = 100
    output_tokens = 50
    cost = Decimal("0.00009")
    latency_ms = 120.0
    score = 0.9


class RequestAttemptFactory(DjangoModelFactory[RequestAttempt]):
    class Meta:
        model = RequestAttempt

    record = declarations.SubFactory(RequestRecordFactory)  # type: ignore[no-untyped-call]  # factory_boy: unannotated
    position = 0
    tier = 0
    model = "mixtral"
    outcome = AttemptOutcome.ACCEPTED
    input_tokens = 100
    output_tokens = 50
    cost = Decimal("0.00009")
    latency_ms = 120.0
    score = 0.9


def make_record(*, attempts: int = 1, **fields: Any) -> RequestRecord:
    """A record with `attempts` attempts, every one but the last escalated."""
    defaults: dict[str, Any] = {"escalations": attempts - 1, "escalated": attempts > 1, "final_tier": attempts - 1}
    record = RequestRecordFactory.create(**{**defaults, **fields})
    for i in range(attempts):
        outcome = AttemptOutcome.ACCEPTED if i == attempts - 1 else AttemptOutcome.ESCALATED
        RequestAttemptFactory.create(record=record, position=i, tier=i, outcome=outcome)
    return record
