"""Routing's tables, one module per domain: registry, policies, keys, records, quality."""

from routing.models.categories import CategoryLadder, LadderTier, TaskCategory
from routing.models.config import ConfigState
from routing.models.experiments import Experiment, ExperimentArm
from routing.models.keys import KEY_PREFIX, KEY_PREFIX_LENGTH, ApiKey, hash_api_key
from routing.models.policies import Policy, PolicyTier, TaskRule
from routing.models.quality import (
    MAX_SAMPLE_CHARS,
    QualityLabel,
    RequestSample,
    ScorerVersion,
    SemanticCacheCheck,
    ShadowEvaluation,
)
from routing.models.records import RecordDeadLetter, RequestAttempt, RequestRecord, RequestText
from routing.models.registry import ModelEndpoint
from routing.models.selection import EndpointMeasure, GoalWeights
from routing.models.versions import PolicyVersion

__all__ = [
    "KEY_PREFIX",
    "KEY_PREFIX_LENGTH",
    "MAX_SAMPLE_CHARS",
    "ApiKey",
    "CategoryLadder",
    "ConfigState",
    "EndpointMeasure",
    "Experiment",
    "ExperimentArm",
    "GoalWeights",
    "LadderTier",
    "ModelEndpoint",
    "Policy",
    "PolicyTier",
    "PolicyVersion",
    "QualityLabel",
    "RecordDeadLetter",
    "RequestAttempt",
    "RequestRecord",
    "RequestSample",
    "RequestText",
    "ScorerVersion",
    "SemanticCacheCheck",
    "ShadowEvaluation",
    "TaskCategory",
    "TaskRule",
    "hash_api_key",
]
