"""The offline routing benchmark: train on one labelled data set, report on another.

Data sets are CSVs in RouteLLM's format (lm-sys/RouteLLM's eval files): a `prompt`
column, a weak and a strong model's correctness columns (`True`/`False`), their
`<model>_response` columns when the answers were recorded, and any other columns
(MMLU's `subject`) as categorical extras. RouteLLM's lists of prompts contaminated by
its training data (`<name>_contaminated_prompts.jsonl` or `contaminated_prompts.jsonl`
next to the CSV) are dropped, as RouteLLM does.

For each scorer the cascade scores the weak model's recorded answer on every eval row;
the prompt-only router predicts from the prompt. `replay.sweep` then gives the exact
curve over all thresholds and `replay.routing_metrics` the CPT/APGR figures. Costs come
from token estimates (`tokens.py`) and the prices passed in. Nothing here calls a model.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from routing.engine.classify import DEFAULT_TASK_RULES, classify
from routing.engine.costing import attempt_cost
from routing.engine.learned import LabelledExample, LearnedScorer, train_learned_model
from routing.engine.offline.replay import ReplayRow, routing_metrics, sweep
from routing.engine.ports import Scorer
from routing.engine.router import PromptRouter, train_prompt_router
from routing.engine.scoring import HeuristicScorer
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, PolicySnapshot, ProviderType, TaskRuleSnapshot, Tier

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
RESPONSE_SUFFIX = "_response"
# Without a recorded answer (MMLU) the model answered with one option letter.
UNRECORDED_ANSWER_TOKENS = 1
# 2**64: the first 8 bytes of a SHA-256 as a fraction in [0, 1).
HASH_SPAN = float(1 << 64)


@dataclass(frozen=True)
class LabelledPrompt:
    """One data set row: the prompt, whether each model was right, what each answered."""

    prompt: str
    weak_correct: bool
    strong_correct: bool
    weak_response: str | None = None
    strong_response: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prices:
    """USD per 1M input and output tokens of the weak and the strong model."""

    weak_input: Decimal
    weak_output: Decimal
    strong_input: Decimal
    strong_output: Decimal


@dataclass(frozen=True)
class BenchResult:
    """One scorer's (or the router's) figures on the eval rows."""

    scorer: str
    mode: str  # "cascade" or "router"
    metrics: Mapping[str, float]

    def summary(self) -> dict[str, Any]:
        """The `--json` shape: scorer, cpt50, cpt80, apgr, savings_at_95."""
        keys = ("cpt50", "cpt80", "apgr", "savings_at_95")
        return {"scorer": self.scorer, **{key: self.metrics[key] for key in keys}}


@dataclass(frozen=True)
class BenchReport:
    n_train: int
    n_eval: int
    weak_quality: float
    strong_quality: float
    baseline_cost: Decimal
    results: tuple[BenchResult, ...]


# --- loading ---------------------------------------------------------------------------


def load_dataset(path: str | Path, *, weak: str = WEAK_MODEL, strong: str = STRONG_MODEL) -> list[LabelledPrompt]:
    """The file's rows, minus RouteLLM's contaminated prompts when their list sits beside it."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        columns = set(reader.fieldnames or ())
        missing = {"prompt", weak, strong} - columns
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = [parse_row(row, columns, weak, strong) for row in reader]
    dropped = contaminated_prompts(Path(path))
    return [row for row in rows if row.prompt not in dropped]


def parse_row(row: Mapping[str, str], columns: set[str], weak: str, strong: str) -> LabelledPrompt:
    responses = {weak + RESPONSE_SUFFIX, strong + RESPONSE_SUFFIX}
    known = {"prompt", weak, strong} | responses
    return LabelledPrompt(
        prompt=row["prompt"],
        weak_correct=truthy(row[weak]),
        strong_correct=truthy(row[strong]),
        weak_response=row.get(weak + RESPONSE_SUFFIX),
        strong_response=row.get(strong + RESPONSE_SUFFIX),
        # Other model columns would be labels, not features: keep only non-boolean ones.
        extra={name: row[name] for name in sorted(columns - known) if not is_boolean(row[name])},
    )


def truthy(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes"}


def is_boolean(value: str) -> bool:
    return value.strip().lower() in {"true", "false"}


def contaminated_prompts(path: Path) -> set[str]:
    """RouteLLM's `eval_prompt`s to drop: `<name>_contaminated_prompts.jsonl` or the plain name."""
    stem = path.name.removesuffix(".csv").removesuffix("_responses")
    candidates = (f"{stem}_contaminated_prompts.jsonl", "contaminated_prompts.jsonl")
    prompts: set[str] = set()
    for candidate in (path.with_name(name) for name in candidates):
        if candidate.exists():
            with open(candidate, encoding="utf-8") as file:
                prompts.update(json.loads(line)["eval_prompt"] for line in file if line.strip())
    return prompts


def split_rows(
    rows: Sequence[LabelledPrompt], *, eval_fraction: float, seed: int
) -> tuple[list[LabelledPrompt], list[LabelledPrompt]]:
    """(train, eval) by a seeded hash of each prompt: stable under reordering and appends."""
    train: list[LabelledPrompt] = []
    evaluate: list[LabelledPrompt] = []
    for row in rows:
        (evaluate if hash_fraction(row.prompt, seed) < eval_fraction else train).append(row)
    return train, evaluate


def hash_fraction(prompt: str, seed: int) -> float:
    # Salted with the seed: the shared dev split was itself cut by sha256(prompt).
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / HASH_SPAN


# --- the benchmark ---------------------------------------------------------------------


def run_benchmark(
    train: Sequence[LabelledPrompt],
    evaluate: Sequence[LabelledPrompt],
    *,
    prices: Prices,
    seed: int = 0,
    use_embeddings: bool = False,
) -> BenchReport:
    """Train the learned scorer and the router on `train`; replay every scorer on `evaluate`."""
    if not train or not evaluate:
        raise ValueError("both the training and the evaluation part need rows")
    policy = bench_policy(prices)
    results: list[BenchResult] = []
    if all(row.weak_response is not None for row in (*train, *evaluate)):
        for scorer in cascade_scorers(train, policy, seed=seed, use_embeddings=use_embeddings):
            results.append(cascade_result(scorer, evaluate, policy))
    router = train_router(train, seed=seed, use_embeddings=use_embeddings)
    results.append(router_result(router, evaluate, policy))
    baseline = [replay_row(row, policy, 0.0) for row in evaluate]
    return BenchReport(
        n_train=len(train),
        n_eval=len(evaluate),
        weak_quality=mean([float(row.weak_correct) for row in evaluate]),
        strong_quality=mean([float(row.strong_correct) for row in evaluate]),
        baseline_cost=sum((row.strong_cost for row in baseline), Decimal(0)),
        results=tuple(results),
    )


def cascade_scorers(
    train: Sequence[LabelledPrompt], policy: PolicySnapshot, *, seed: int, use_embeddings: bool
) -> list[Scorer]:
    """The heuristic, and the learned scorer fitted on all of `train`.

    The logprob scorer is left out: recorded answers carry no token probabilities, so it
    would only repeat the heuristic.
    """
    examples = [labelled_example(row, policy) for row in train]
    # No internal holdout: the eval rows are the holdout, and every label helps.
    model, _ = train_learned_model(examples, seed=seed, holdout=0.0, use_embeddings=use_embeddings)
    return [HeuristicScorer(), LearnedScorer(model)]


def train_router(train: Sequence[LabelledPrompt], *, seed: int, use_embeddings: bool) -> PromptRouter:
    """The router, taught where the strong model helps: the data records both models' grades."""
    extras = [row.extra for row in train]
    return train_prompt_router(
        [row.prompt for row in train],
        [row.weak_correct for row in train],
        seed=seed,
        use_embeddings=use_embeddings,
        extra_features=extras if any(extras) else None,
        strong_correct=[row.strong_correct for row in train],
    )


def cascade_result(scorer: Scorer, evaluate: Sequence[LabelledPrompt], policy: PolicySnapshot) -> BenchResult:
    def score(row: LabelledPrompt) -> float:
        chat = chat_for(row)
        return scorer.score(chat, weak_completion(row, chat), task=classify(chat, policy).category)

    return result(scorer.name, "cascade", evaluate, policy, score)


def router_result(router: PromptRouter, evaluate: Sequence[LabelledPrompt], policy: PolicySnapshot) -> BenchResult:
    def score(row: LabelledPrompt) -> float:
        # The router predicts P(strong needed); as a confidence in the cheap model, 1 minus that.
        return 1.0 - router.predict(row.prompt, extra=row.extra)

    return result("prompt_router", "router", evaluate, policy, score)


def result(
    name: str,
    mode: str,
    evaluate: Sequence[LabelledPrompt],
    policy: PolicySnapshot,
    score: Callable[[LabelledPrompt], float],
) -> BenchResult:
    rows = [replay_row(row, policy, score(row)) for row in evaluate]
    points = sweep(rows, cascade=mode == "cascade")
    weak = mean([row.cheap_quality for row in rows])
    strong = mean([row.strong_quality for row in rows])
    return BenchResult(name, mode, routing_metrics(points, weak_quality=weak, strong_quality=strong))


def oracle_result(evaluate: Sequence[LabelledPrompt], prices: Prices) -> BenchResult:
    """A reference: knows both outcomes and sends the rows the strong model wins first."""
    return result("oracle", "router", evaluate, bench_policy(prices), oracle_score)


def oracle_score(row: LabelledPrompt) -> float:
    """0 to 0.5 where the strong model wins, about 0.5 on ties, 0.5 to 1 where it loses.

    A sliver of hash breaks the ties within each group, so the sweep can escalate the
    wins one at a time instead of all at once.
    """
    gain = float(row.strong_correct) - float(row.weak_correct)
    return (1.0 - gain) / 2.0 * 0.98 + hash_fraction(row.prompt, 0) * 0.01


# --- rows, requests and costs ----------------------------------------------------------


def bench_policy(prices: Prices) -> PolicySnapshot:
    """Weak → strong at the given prices, with the default task rules."""
    weak = endpoint(1, "weak", prices.weak_input, prices.weak_output)
    strong = endpoint(2, "strong", prices.strong_input, prices.strong_output)
    rules = tuple(
        TaskRuleSnapshot(i, name, pattern, first) for i, (name, pattern, first) in enumerate(DEFAULT_TASK_RULES)
    )
    tiers = (Tier(0, weak, 0.5), Tier(1, strong, 1.0))  # thresholds unused: the sweep tries them all
    return PolicySnapshot(id=0, name="bench", version=1, tiers=tiers, task_rules=rules)


def endpoint(id_: int, name: str, input_price: Decimal, output_price: Decimal) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=id_,
        name=name,
        provider_kind=ProviderType.REPLAY,
        model_id=name,
        input_price_per_m=input_price,
        output_price_per_m=output_price,
    )


def chat_for(row: LabelledPrompt) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=row.prompt),))


def weak_completion(row: LabelledPrompt, chat: ChatRequest) -> Completion:
    text = row.weak_response or ""
    return Completion(
        text=text,
        finish_reason="stop",
        input_tokens=estimate_prompt_tokens(chat),
        output_tokens=estimate_tokens(text),
        latency_ms=0.0,
        quality_label=float(row.weak_correct),
    )


def labelled_example(row: LabelledPrompt, policy: PolicySnapshot) -> LabelledExample:
    chat = chat_for(row)
    task = classify(chat, policy).category
    return LabelledExample(chat=chat, completion=weak_completion(row, chat), task=task, acceptable=row.weak_correct)


def replay_row(row: LabelledPrompt, policy: PolicySnapshot, score: float) -> ReplayRow:
    prompt_tokens = estimate_prompt_tokens(chat_for(row))
    weak, strong = policy.tiers[0].endpoint, policy.strongest.endpoint
    return ReplayRow(
        score=score,
        cheap_quality=float(row.weak_correct),
        strong_quality=float(row.strong_correct),
        cheap_cost=attempt_cost(weak, prompt_tokens, answer_tokens(row.weak_response)),
        strong_cost=attempt_cost(strong, prompt_tokens, answer_tokens(row.strong_response)),
    )


def answer_tokens(response: str | None) -> int:
    return estimate_tokens(response) if response is not None else UNRECORDED_ANSWER_TOKENS


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
