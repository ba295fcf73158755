"""Running experiments as the hot path sees them, and which arm an end user is in.

An end user's arm is a hash of the experiment and the end user id mapped onto the arms'
weights, so the same user lands in the same arm on every worker and after restarts,
without storing an assignment. A request with no end user (`user` unset) is assigned at
random. See docs/experiments.md.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.utils import timezone

from routing.choices import ExperimentStatus
from routing.config.selection import SelectionInputs, every_tier, selection_inputs_load, with_selection
from routing.config.snapshots import endpoint_snapshot, policy_snapshot, tier_endpoints
from routing.config.version import discard_stale_connections
from routing.engine.ports import Provider
from routing.engine.types import PolicySnapshot
from routing.models import Experiment, ExperimentArm, PolicyVersion
from routing.policies.versions import policy_at_version
from routing.providers import build_provider


@dataclass(frozen=True, slots=True)
class ArmSnapshot:
    id: int
    name: str
    policy_id: int
    weight: int
    # An arm pinned to a stored version routes with that version, not the policy's current one.
    pinned: PolicySnapshot | None = None


@dataclass(frozen=True, slots=True)
class ExperimentSnapshot:
    id: int
    api_key_id: int | None
    team: str
    arms: tuple[ArmSnapshot, ...]

    @property
    def total_weight(self) -> int:
        return sum(arm.weight for arm in self.arms)


def experiments_load() -> list[ExperimentSnapshot]:
    """Every running experiment with at least one arm."""
    discard_stale_connections()
    rows = Experiment.objects.filter(status=ExperimentStatus.RUNNING).prefetch_related("arms")
    at = timezone.now()
    inputs = selection_inputs_load() if any(a.policy_version for r in rows for a in r.arms.all()) else None
    snapshots = [
        ExperimentSnapshot(
            id=row.id,
            api_key_id=row.api_key_id,
            team=row.team,
            arms=tuple(ArmSnapshot(a.id, a.name, a.policy_id, a.weight, pinned(a, at, inputs)) for a in row.arms.all()),
        )
        for row in rows
    ]
    return [s for s in snapshots if s.arms and s.total_weight > 0]


def pinned(arm: ExperimentArm, at: datetime, inputs: SelectionInputs | None) -> PolicySnapshot | None:
    """The snapshot of the stored version an arm is pinned to (None: not pinned, or no such version)."""
    if not arm.policy_version or inputs is None:
        return None
    version = PolicyVersion.objects.filter(policy_id=arm.policy_id, number=arm.policy_version).first()
    if version is None:
        return None
    policy = policy_at_version(version)
    return with_selection(policy_snapshot(policy, at), policy, inputs, at, endpoint_snapshot)


def providers_ensure(experiments: Sequence[ExperimentSnapshot], providers: dict[int, Provider]) -> None:
    """A provider for every endpoint a pinned version may call that current policies do not."""
    for arm in (a for e in experiments for a in e.arms if a.pinned is not None):
        assert arm.pinned is not None
        for tier in every_tier(arm.pinned):
            for endpoint in tier_endpoints(tier):
                if endpoint.id not in providers:
                    providers[endpoint.id] = build_provider(endpoint)


def experiment_for(experiments: Sequence[ExperimentSnapshot], key_id: int, team: str) -> ExperimentSnapshot | None:
    """The key's own experiment, else its team's."""
    by_key = next((e for e in experiments if e.api_key_id == key_id), None)
    return by_key or next((e for e in experiments if e.api_key_id is None and e.team == team), None)


def arm_of(experiment: ExperimentSnapshot, end_user: str) -> ArmSnapshot:
    """The end user's arm: the same one every time for the same user."""
    total = experiment.total_weight
    point = bucket(experiment.id, end_user) % total if end_user else random.randrange(total)
    for arm in experiment.arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    return experiment.arms[-1]


def bucket(experiment_id: int, end_user: str) -> int:
    """A point in [0, total weight): uniform across users, fixed for one."""
    digest = hashlib.sha256(f"{experiment_id}:{end_user}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class ExperimentCache:
    """The running experiments, reloaded whenever the config cache reloads its policies."""

    def __init__(self) -> None:
        self.loaded_with: object = None
        self.experiments: list[ExperimentSnapshot] = []

    async def current(self, policies: object, providers: dict[int, Provider]) -> list[ExperimentSnapshot]:
        """`policies` is the config cache's policy map: a new object after every reload."""
        if policies is not self.loaded_with:
            self.experiments = await sync_to_async(experiments_load)()
            providers_ensure(self.experiments, providers)
            self.loaded_with = policies
        return self.experiments


experiment_cache = ExperimentCache()
