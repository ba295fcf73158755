"""Request records for dashboard tests, made the way the gateway makes them.

`Traffic.payload()` builds a payload with `routing.records.recorder.record_payload` from a real
policy snapshot, so the rollups see exactly what the flusher hands them; `Traffic.store()`
stores payloads through `records_persist`, which sends `records_stored` as in production.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from routing.config.snapshots import KeyInfo, policy_snapshot
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Message, Outcome
from routing.models import ApiKey, Policy
from routing.records import flush, recorder
from testing.factories import make_key, make_policy, replay_endpoints


class Traffic:
    """Makes and stores request records for one policy and one API key."""

    def __init__(self, policy: Policy, key: ApiKey) -> None:
        row = Policy.objects.prefetch_related("tiers__endpoint", "task_rules").get(id=policy.id)
        self.policy = policy
        self.snapshot = policy_snapshot(row)
        self.key = KeyInfo(
            id=key.id,
            prefix=key.prefix,
            policy_id=policy.id,
            team=key.team,
            app=key.app,
            expires_at=None,
            revoked=False,
        )

    @classmethod
    def for_new_policy(cls, name: str = "demo", *, team: str = "growth", app: str = "support-bot") -> Traffic:
        mixtral, gpt4 = replay_endpoints()
        policy = make_policy(name, [(mixtral, 0.9), (gpt4, 1.0)])
        key, _ = make_key(policy, team=team, app=app)
        return cls(policy, key)

    def payload(
        self,
        *,
        created: datetime | None = None,
        escalated: bool = False,
        failed: bool = False,
        latency_ms: float = 120.0,
        cost: str = "0.0001",
        score: float = 0.95,
        quality_label: float | None = None,
        user: str = "",
        **overrides: Any,
    ) -> dict[str, Any]:
        """One record's payload: answered by tier 0, by tier 1 after an escalation, or failed."""
        attempts = self._attempts(
            escalated=escalated, failed=failed, cost=Decimal(cost), score=score, label=quality_label
        )
        completion = None if failed else Completion("4", "stop", 10, 5, latency_ms, quality_label=quality_label)
        result = CascadeResult(task="math", attempts=attempts, completion=completion, latency_ms=latency_ms)
        chat = ChatRequest(messages=(Message("user", "What is 2 + 2?"),), user=user)
        payload = recorder.record_payload(
            request_id=uuid.uuid4(),
            created=created or timezone.now(),
            key=self.key,
            policy=self.snapshot,
            chat=chat,
            result=result,
        )
        return {**payload, **overrides}

    def _attempts(
        self, *, escalated: bool, failed: bool, cost: Decimal, score: float, label: float | None
    ) -> tuple[Attempt, ...]:
        cheap, strong = (t.endpoint for t in self.snapshot.tiers[:2])
        if failed:
            return (Attempt(0, cheap.id, cheap.name, Outcome.FAILED, error="boom", error_kind="unavailable"),)
        if escalated:
            weak = Attempt(0, cheap.id, cheap.name, Outcome.ESCALATED, 10, 5, cost=cost / 2, score=0.2)
            final = Attempt(1, strong.id, strong.name, Outcome.ACCEPTED, 10, 5, cost=cost / 2, score=score)
            return weak, Attempt(**{**_fields(final), "quality_label": label})
        return (Attempt(0, cheap.id, cheap.name, Outcome.ACCEPTED, 10, 5, cost=cost, score=score, quality_label=label),)

    def store(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store records as the flusher does; returns the ones stored now."""
        return flush.records_persist(payloads=payloads)

    def send(self, count: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
        return self.store([self.payload(**kwargs) for _ in range(count)])


def _fields(attempt: Attempt) -> dict[str, Any]:
    return {name: getattr(attempt, name) for name in Attempt.__dataclass_fields__}
