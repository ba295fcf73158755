"""Routing's tables, one module per domain: registry, policies, keys, records, quality."""

from routing.models.config import ConfigState
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
from routing.models.records import RecordDeadLetter, RequestAttempt, RequestRecord
from routing.models.registry import ModelEndpoint

__all__ = [
    "KEY_PREFIX",
    "KEY_PREFIX_LENGTH",
    "MAX_SAMPLE_CHARS",
    "ApiKey",
    "ConfigState",
    "ModelEndpoint",
    "Policy",
    "PolicyTier",
    "QualityLabel",
    "RecordDeadLetter",
    "RequestAttempt",
    "RequestRecord",
    "RequestSample",
    "ScorerVersion",
    "SemanticCacheCheck",
    "ShadowEvaluation",
    "TaskRule",
    "hash_api_key",
]
