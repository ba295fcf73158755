"""What selection and classification work from: goal weights, measured figures, task categories.

Plain data, built from the database by `routing.config.snapshots` and carried in the
`PolicySnapshot`, so the engine stays free of Django. See docs/selection.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GoalWeights:
    """How much each term counts when tiers are ranked; only the ratios matter."""

    cost: float = 0.5
    quality: float = 0.3
    latency: float = 0.1
    fit: float = 0.1

    def terms(self) -> dict[str, float]:
        return {"cost": self.cost, "quality": self.quality, "latency": self.latency, "fit": self.fit}


BALANCED = GoalWeights()
# The defaults of the four goals, as the data migration seeds them (operators edit the rows).
DEFAULT_WEIGHTS: dict[str, GoalWeights] = {
    "cost": GoalWeights(1.0, 0.1, 0.05, 0.05),
    "balanced": BALANCED,
    "quality": GoalWeights(0.1, 1.0, 0.05, 0.2),
    "latency": GoalWeights(0.1, 0.1, 1.0, 0.05),
}


@dataclass(frozen=True, slots=True)
class Measure:
    """What traffic measured about one endpoint, over every category ("") or one."""

    p95_latency_ms: float | None = None
    latency_samples: int = 0
    quality: float | None = None
    quality_samples: int = 0


@dataclass(frozen=True, slots=True)
class CategorySnapshot:
    """An operator's task category: keywords and patterns, then examples by meaning.

    `example_vectors` are the examples' unit embeddings (shape (n, 384)), computed when the
    snapshot is built; None when there are no examples or no embedding model.
    """

    name: str
    position: int = 100
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    similarity_threshold: float = 0.6
    example_vectors: Any = None
