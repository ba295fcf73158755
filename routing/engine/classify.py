"""Task classification: which category a prompt belongs to and which tier it starts on.

A policy's task rules are regular expressions tried in `position` order against the last
user message; the first that matches names the task. The operators' task categories come
around them: a category with its own ladder on the policy is tried first (keywords and
patterns), the others after the rules, then every category's example prompts by meaning
(the most similar above its threshold, as semantic routers do). The task picks the first
tier and the ladder (docs/selection.md) and tells the scorer what a good answer looks like
(a greeting may be two words, an arithmetic answer needs a number at the end).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from routing.engine import embeddings
from routing.engine.selection_data import CategorySnapshot
from routing.engine.tokens import estimate_prompt_tokens
from routing.engine.types import ChatRequest, PolicySnapshot, TaskRuleSnapshot

UNKNOWN = "unknown"
# Rules, keywords and examples see at most this much of a prompt: its start and its end, where
# what is asked almost always is. Classifying then costs the same for 20 kB and for 1 MB
# (a 1 MB prompt took seconds of regular-expression search on the event loop).
CLASSIFIED_HEAD_CHARS = 12_000
CLASSIFIED_TAIL_CHARS = 4_000

# `\A` anchors the lookahead for a digit to the start, so a long prompt without one
# fails after one scan instead of one scan per start position.
MATH_PATTERN = (
    r"\A(?=[\s\S]*\d)[\s\S]*\b(?:how (?:many|much|long|far|fast|old|often|tall|high)"
    r"|calculate|compute|total|combined|altogether|average|sum|difference|remaining"
    r"|what percent(?:age)?|what (?:score|floor|time|number|amount|age|distance))\b"
)

# (category, pattern, first_tier) in the order they are tried. The specific intents go
# first and the greeting last, so that "Hello, where is my order?" is an order_status
# question and a word problem that mentions a shop is still math.
# Every default starts on the cheapest tier: cheap first is the product's point, and
# operators raise first_tier per category once the numbers show it pays.
DEFAULT_TASK_RULES: tuple[tuple[str, str, int], ...] = (
    # Two anchored lookaheads, not `order.*status`: that form rescans the rest of the line
    # from every "order", and a prompt of "order order order ..." took seconds.
    (
        "order_status",
        r"\A(?=[\s\S]*\b(order|tracking|shipment|delivery)\b)(?=[\s\S]*\b(status|where|track)\b)",
        0,
    ),
    ("math", MATH_PATTERN, 0),
    ("comparison", r"\b(compare|versus|vs\.?|difference between|better than)\b", 0),
    ("summarization", r"\b(summari[sz]e|tl;?dr|summary)\b", 0),
    ("translation", r"\btranslat(e|ion)\b|\bin (french|spanish|german|japanese)\b", 0),
    (
        "faq",
        r"\b(return policy|refunds?|returns?|shipping (cost|fee|time)s?|payment methods?"
        r"|cancel|my account|password|opening hours|contact (you|support)|how (do|can) i)\b",
        0,
    ),
    (
        "product_search",
        r"\b(do you (have|sell|carry)|in stock|looking for|search(ing)? for|find me"
        r"|show me|available)\b",
        0,
    ),
    (
        "recommendation",
        r"\b(recommend\w*|suggest\w*|similar to|what should i (read|watch|buy))\b",
        0,
    ),
    (
        "discussion",
        r"\b(what do you think|opinion|discuss|why (is|does|did)|explain|theor(y|ies)"
        r"|analy[sz]e|meaning of)\b",
        0,
    ),
    # Last, and only a short message: "Hi, can you recommend ..." is a recommendation.
    ("greeting", r"^\s*(hi|hello|hey|good (morning|afternoon|evening))\b[^\n]{0,40}$", 0),
)


@dataclass(frozen=True, slots=True)
class TaskMatch:
    """The task a request was classified as and the tier index it starts on."""

    category: str
    first_tier: int


def classify(chat: ChatRequest, policy: PolicySnapshot) -> TaskMatch:
    """Name the task of `chat` and pick the tier the cascade starts on.

    The first matching rule (by `position`) wins; no match is "unknown" on tier 0.
    Short prompts start on tier 0 whatever their rule says, and the result is always
    a valid index into `policy.tiers` (0 when there are none).
    """
    text = PromptText(classified_text(chat.prompt))
    category, first_tier = laddered_category(text, policy), 0
    if category == UNKNOWN:
        # A matching rule is final, also one that names no category (a routed policy's catch-all).
        ruled = match_rule(text, policy)
        category, first_tier = ruled if ruled is not None else (match_category(text, policy.categories), 0)
    if is_short(chat, policy):
        first_tier = 0
    return TaskMatch(category, clamp_tier(tools_floor(chat, policy, first_tier), len(policy.tiers)))


def classified_text(prompt: str) -> str:
    """The part of `prompt` classification looks at: all of it, or its start and its end."""
    if len(prompt) <= CLASSIFIED_HEAD_CHARS + CLASSIFIED_TAIL_CHARS:
        return prompt
    return prompt[:CLASSIFIED_HEAD_CHARS] + "\n" + prompt[-CLASSIFIED_TAIL_CHARS:]


def tools_floor(chat: ChatRequest, policy: PolicySnapshot, first_tier: int) -> int:
    """A request with tools starts no lower than the policy's tools tier (some cheap models are poor at tools)."""
    if chat.tools and policy.tools_first_tier is not None:
        return max(first_tier, policy.tools_first_tier)
    return first_tier


class PromptText:
    """The text classification reads, and which patterns were found in it: each pattern is
    searched once, also when a rule and a category share it (as the defaults do)."""

    __slots__ = ("_found", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[re.Pattern[str], bool] = {}

    def has(self, pattern: re.Pattern[str]) -> bool:
        found = self._found.get(pattern)
        if found is None:
            found = self._found[pattern] = pattern.search(self.text) is not None
        return found


def match_rule(prompt: PromptText, policy: PolicySnapshot) -> tuple[str, int] | None:
    """(category, first_tier) of the first rule whose pattern is found in `prompt`; None when none is."""
    for pattern, category, first_tier in ordered_rules(policy.task_rules):
        if prompt.has(pattern):
            return category, first_tier
    return None


@functools.lru_cache(maxsize=256)
def ordered_rules(rules: tuple[TaskRuleSnapshot, ...]) -> tuple[tuple[re.Pattern[str], str, int], ...]:
    """The rules' valid patterns, compiled, in `position` order: worked out once per rule set, not per request."""
    ordered = sorted(rules, key=lambda r: r.position)
    return tuple((pattern, r.category, r.first_tier) for r in ordered if (pattern := compiled(r.pattern)) is not None)


def laddered_category(prompt: PromptText, policy: PolicySnapshot) -> str:
    """A category with its own ladder on this policy, found by keyword or pattern: before the task rules.

    A ladder is the operator saying the category matters on this policy, so a code request
    that a default rule would call "discussion" still climbs the code ladder.
    """
    if not policy.ladders:
        return UNKNOWN
    laddered = sorted((c for c in policy.categories if c.name in policy.ladders), key=lambda c: c.position)
    return next((c.name for c in laddered if matches_rules(prompt, c)), UNKNOWN)


def matches_rules(prompt: PromptText, category: CategorySnapshot) -> bool:
    return any(prompt.has(p) for p in category_patterns(category.keywords, category.patterns))


def match_category(prompt: PromptText, categories: Sequence[CategorySnapshot]) -> str:
    """The first category whose keyword or pattern is in `prompt`, else the nearest by its examples."""
    ordered = sorted(categories, key=lambda c: c.position)
    for category in ordered:
        if matches_rules(prompt, category):
            return category.name
    return nearest_by_examples(prompt.text, ordered)


@functools.lru_cache(maxsize=1024)
def category_patterns(keywords: tuple[str, ...], patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """A category's keywords as one alternation (any whole word matches), then its valid patterns."""
    words = compiled(r"\b(?:" + "|".join(re.escape(word) for word in keywords) + r")\b") if keywords else None
    found = (words, *(compiled(pattern) for pattern in patterns))
    return tuple(p for p in found if p is not None)


def nearest_by_examples(prompt: str, categories: Sequence[CategorySnapshot]) -> str:
    """The category with the example most similar to `prompt`, when that is above its threshold."""
    with_examples = [c for c in categories if c.example_vectors is not None]
    vector = prompt_vector(prompt) if with_examples and prompt.strip() else None
    if vector is None:
        return UNKNOWN
    best, best_similarity = UNKNOWN, -1.0
    for category in with_examples:
        similarity = float(np.max(category.example_vectors @ vector))
        if similarity >= category.similarity_threshold and similarity > best_similarity:
            best, best_similarity = category.name, similarity
    return best


@functools.lru_cache(maxsize=256)
def prompt_vector(prompt: str) -> NDArray[np.float32] | None:
    # Cached: the budget hold and the cascade classify the same prompt one after the other.
    vectors = embeddings.embed([prompt])
    return None if vectors is None else vectors[0]


def is_short(chat: ChatRequest, policy: PolicySnapshot) -> bool:
    limit = policy.short_prompt_tokens
    return limit > 0 and estimate_prompt_tokens(chat) < limit


def clamp_tier(index: int, tier_count: int) -> int:
    return max(0, min(index, tier_count - 1))


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None when it is not a valid regex.

    Operators type these patterns in; one bad rule must make that rule never match,
    not fail every request of the policy.
    """
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None
