"""The offline quality benchmark: every scorer on a cascade data set, as a policy would meet it.

Each data set (`datasets.py`: this project's JSONL format, or a RouteLLM, RouterBench or
MoT file read as it is) is split by a seeded hash of the prompt into a development
training part and an evaluation part. The evaluation part is a stream of requests in a
seeded order; the first x% of it (x = 5, 10, 20 by default) come with labels, as shadow
evaluations would give them in production, and every scorer is judged on the rest:

- heuristic: `scoring.heuristic_opinion` on the cheap answer; "no opinion" counts as
  0.5 and the share of rows with an opinion is reported as its coverage;
- learned: `learned.py` fitted on the training part (text features of the cheap answer);
- consistency: the vote share of k cheap samples (`agreement.py`; where the data has
  several samples), returning the majority's answer;
- cross_model: the agreement of a panel of k cheap models (where the data has several):
  the preferred cheap model and the k-1 others that were most often right on the
  labelled prefix, among those costing at most `cheap_cost_ratio` of the strong model;
- combined: `combined.py`'s logistic model over those signals (the learned scorer's
  score among them), fitted on the labelled prefix only;
- prompt_router: `router.py` fitted on the training part, prompt only (no answer seen);
- random and oracle rows for reference.

For every scorer: CPT(50%), CPT(80%) by share of strong calls and by cost (the extra
cheap calls included), APGR and the savings at 95% of the strong quality, each with a
seeded bootstrap interval (`metrics.py`), and the operating point a threshold calibrated
on the labelled prefix (`replay.calibrate_threshold`) reaches on the rest. Nothing here
calls a model; docs/quality-benchmark.md explains the figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from routing.engine import embeddings, learned
from routing.engine.agreement import Agreement, agreement
from routing.engine.classify import DEFAULT_TASK_RULES, classify
from routing.engine.linear import FloatArray
from routing.engine.offline import datasets
from routing.engine.offline.combined import Signals, out_of_fold_scores, train_signal_model
from routing.engine.offline.datasets import ROUTELLM_PRICES, Prices, PromptRecord, load_records
from routing.engine.offline.metrics import FIGURES, Outcomes, bootstrap, figures
from routing.engine.offline.replay import ReplayRow, calibrate_threshold
from routing.engine.router import PromptRouter, train_prompt_router
from routing.engine.scoring import heuristic_opinion
from routing.engine.tokens import estimate_tokens
from routing.engine.types import ChatRequest, Completion, Message, PolicySnapshot, TaskRuleSnapshot

WEAK_MODEL: Final = datasets.ROUTELLM_WEAK
STRONG_MODEL: Final = datasets.ROUTELLM_STRONG
# 2**64: the first 8 bytes of a SHA-256 as a fraction in [0, 1).
HASH_SPAN: Final = float(1 << 64)
NO_OPINION: Final = 0.5
# Fewer evaluation rows than this give no figures worth reading.
MIN_EVAL_ROWS: Final = 10
# Fewer labelled answers with text than this train no learned scorer.
MIN_LEARNED_ROWS: Final = 20
# Cheap models must have an answer on at least this share of rows to join a panel.
PANEL_PRESENCE: Final = 0.9


class HasPrompt(Protocol):
    @property
    def prompt(self) -> str: ...


Row = TypeVar("Row", bound=HasPrompt)
Embedder = Callable[[Sequence[str]], NDArray[Any] | None]


@dataclass(frozen=True)
class BenchConfig:
    """How the benchmark splits, samples and resamples; nothing here depends on a data set."""

    seed: int = 0
    eval_fraction: float = 0.5
    label_shares: tuple[float, ...] = (0.05, 0.10, 0.20)
    samples: int = 5  # cheap samples (consistency) or cheap models (cross_model) per request
    resamples: int = 200
    cheap_cost_ratio: float = 0.2
    quality_share: float = 0.95  # the calibrated threshold's target, of the strong quality
    use_embeddings: bool = False  # MiniLM features in the learned scorer and the router

    @property
    def main_share(self) -> float:
        return max(self.label_shares)


@dataclass(frozen=True)
class ScorerResult:
    """One scorer's figures on the unlabelled rest of the stream."""

    scorer: str
    mode: str  # "cascade" or "router"
    figures: Mapping[str, float]
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    cheap_quality: float = math.nan  # of the answers the cheap tier returns
    cheap_cost_share: float = math.nan  # the cheap tier's cost / the all-strong cost
    coverage: float | None = None  # heuristic: share of rows it has an opinion on
    calibrated: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "mode": self.mode,
            **{name: nan_to_none(self.figures.get(name, math.nan)) for name in FIGURES},
            "ci": {name: [nan_to_none(low), nan_to_none(high)] for name, (low, high) in self.intervals.items()},
            "cheap_quality": nan_to_none(self.cheap_quality),
            "cheap_cost_share": nan_to_none(self.cheap_cost_share),
            "coverage": self.coverage,
            "calibrated": {k: nan_to_none(v) for k, v in self.calibrated.items()} if self.calibrated else None,
        }


@dataclass(frozen=True)
class CurvePoint:
    """A label-dependent scorer after seeing the labels of the first `label_share` of the stream."""

    label_share: float
    n_labelled: int
    n_test: int
    scorer: str
    figures: Mapping[str, float]
    calibrated: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_share": self.label_share,
            "n_labelled": self.n_labelled,
            "n_test": self.n_test,
            "scorer": self.scorer,
            **{name: nan_to_none(self.figures.get(name, math.nan)) for name in FIGURES},
            "calibrated": {k: nan_to_none(v) for k, v in self.calibrated.items()} if self.calibrated else None,
        }


@dataclass(frozen=True)
class DatasetReport:
    name: str
    cheap: str
    strong: str
    n_records: int
    n_train: int
    n_eval: int
    n_labelled: int
    n_test: int
    weak_quality: float  # the cheap model's single answer, on the rows judged
    strong_quality: float
    results: tuple[ScorerResult, ...]
    learning_curve: tuple[CurvePoint, ...] = ()
    panel: tuple[str, ...] = ()
    samples: int = 1
    notes: tuple[str, ...] = ()
    source: str = ""

    def result(self, scorer: str) -> ScorerResult | None:
        return next((r for r in self.results if r.scorer == scorer), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "cheap": self.cheap,
            "strong": self.strong,
            "n_records": self.n_records,
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "n_labelled": self.n_labelled,
            "n_test": self.n_test,
            "weak_quality": self.weak_quality,
            "strong_quality": self.strong_quality,
            "samples": self.samples,
            "panel": list(self.panel),
            "notes": list(self.notes),
            "results": [result.to_dict() for result in self.results],
            "learning_curve": [point.to_dict() for point in self.learning_curve],
        }


def nan_to_none(value: float) -> float | None:
    """NaN (a figure no threshold reaches) as null, so the report stays strict JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


# --- loading and splitting ----------------------------------------------------------------


def load_dataset(
    path: str | Path,
    *,
    cheap: str | None = None,
    strong: str | None = None,
    prices: Prices | None = None,
    feature_columns: Sequence[str] = (),
) -> list[PromptRecord]:
    """Any supported file's records (`datasets.load_records`)."""
    return load_records(
        path, cheap=cheap, strong=strong, prices=prices or ROUTELLM_PRICES, feature_columns=feature_columns
    )


def split_rows(rows: Sequence[Row], *, eval_fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, eval) by a seeded hash of each row's prompt: stable under reordering and appends."""
    train: list[Row] = []
    evaluate: list[Row] = []
    for row in rows:
        (evaluate if hash_fraction(row.prompt, seed) < eval_fraction else train).append(row)
    return train, evaluate


def hash_fraction(prompt: str, seed: int) -> float:
    # Salted with the seed: the shared dev split was itself cut by sha256(prompt).
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / HASH_SPAN


def stream_order(records: Sequence[PromptRecord], seed: int) -> list[PromptRecord]:
    """The evaluation rows in the order a policy would meet them (a seeded shuffle)."""
    return sorted(records, key=lambda r: hash_fraction(f"stream:{r.id}:{r.prompt}", seed))


# --- one data set -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Answered:
    """What one way of answering with the cheap tier gives per stream row."""

    quality: FloatArray  # of the answer returned
    cost: FloatArray  # of every cheap call made
    agreements: tuple[Agreement | None, ...] = ()
    texts: tuple[str | None, ...] = ()  # of the answer returned, where recorded


@dataclass(frozen=True, eq=False)
class Stream:
    """The evaluation stream and everything about it no label is needed for."""

    records: tuple[PromptRecord, ...]
    anchor: FloatArray
    strong: FloatArray
    strong_cost: FloatArray
    single: Answered
    heuristic: tuple[float | None, ...]
    text_features: tuple[Mapping[str, float], ...]
    consistency: Answered | None

    def __len__(self) -> int:
        return len(self.records)


def run_dataset(
    name: str,
    records: Sequence[PromptRecord],
    config: BenchConfig = BenchConfig(),
    *,
    embed: Embedder | None = None,
    source: str = "",
) -> DatasetReport:
    """Every scorer on `records`: trained on the training part, judged on the stream's rest."""
    train, evaluate = split_rows(records, eval_fraction=config.eval_fraction, seed=config.seed)
    return run_split(name, train, evaluate, config, embed=embed, source=source)


def run_split(
    name: str,
    train: Sequence[PromptRecord],
    evaluate: Sequence[PromptRecord],
    config: BenchConfig = BenchConfig(),
    *,
    embed: Embedder | None = None,
    source: str = "",
) -> DatasetReport:
    """Every scorer trained on `train` and judged on the rest of the `evaluate` stream."""
    if not train or len(evaluate) < MIN_EVAL_ROWS:
        raise ValueError(f"{name}: too few rows ({len(train)} to train, {len(evaluate)} to evaluate)")
    embedder = CachingEmbedder(embed) if embed is not None else None
    stream = build_stream(stream_order(evaluate, config.seed), config, embedder)
    notes: list[str] = []
    fixed = fixed_scores(train, stream, config, notes)
    candidates = panel_candidates(train, config)
    results: list[ScorerResult] = []
    curve: list[CurvePoint] = []
    panel: tuple[str, ...] = ()
    n_labelled, n_test = 0, len(stream)
    for share in sorted(config.label_shares):
        labelled = max(1, round(share * len(stream)))
        prefix, rest = np.arange(labelled), np.arange(labelled, len(stream))
        scored, panel = labelled_scores(stream, fixed, candidates, prefix, config, embedder)
        curve += [
            curve_point(scorer, scored[scorer], stream, prefix, rest, share, config)
            for scorer in LEARNING_CURVE
            if scorer in scored
        ]
        if math.isclose(share, config.main_share):
            results = [result_of(s, scored[s], stream, prefix, rest, config) for s in SCORER_ORDER if s in scored]
            results += [reference_result(reference, stream, rest, config) for reference in ("random", "oracle")]
            n_labelled, n_test = len(prefix), len(rest)
    if not candidates:
        notes.append("one cheap model: no cross-model agreement")
    if stream.consistency is None:
        notes.append("one cheap sample per prompt: no consistency")
    return DatasetReport(
        name=name,
        cheap=evaluate[0].cheap,
        strong=evaluate[0].strong,
        n_records=len(train) + len(evaluate),
        n_train=len(train),
        n_eval=len(evaluate),
        n_labelled=n_labelled,
        n_test=n_test,
        weak_quality=float(stream.anchor[n_labelled:].mean()),
        strong_quality=float(stream.strong[n_labelled:].mean()),
        results=tuple(results),
        learning_curve=tuple(curve),
        panel=panel,
        samples=config.samples if stream.consistency is not None else 1,
        notes=tuple(notes),
        source=source,
    )


SCORER_ORDER: Final = ("heuristic", "learned", "consistency", "cross_model", "combined", "prompt_router")
# The scorers whose figures depend on how many labels the stream gave.
LEARNING_CURVE: Final = ("cross_model", "combined")
# A scorer's scores (None: use its Answered's agreement scores) and how its cheap tier answers.
Scored = tuple[Answered, FloatArray | None]


def labelled_scores(
    stream: Stream,
    fixed: Mapping[str, Scored],
    candidates: Sequence[tuple[str, float]],
    prefix: NDArray[np.int64],
    config: BenchConfig,
    embedder: CachingEmbedder | None,
) -> tuple[dict[str, Scored], tuple[str, ...]]:
    """Every scorer once the `prefix` rows are labelled: the panel and the combined model use them."""
    scored = dict(fixed)
    panel: tuple[str, ...] = ()
    if candidates:
        panel = choose_panel(stream, prefix, candidates, config.samples - 1)
        scored["cross_model"] = (panel_answers(stream, panel, embedder), None)
    combined = combined_scores(stream, prefix, scored, config)
    if combined is not None:
        scored["combined"] = combined
    return scored, panel


def build_stream(records: Sequence[PromptRecord], config: BenchConfig, embedder: CachingEmbedder | None) -> Stream:
    def floats(values: Iterable[float]) -> FloatArray:
        return np.asarray(list(values), dtype=np.float64)

    completions = [(chat_for(r), completion_for(r)) for r in records]
    tasks = [task_of(chat) for chat, _ in completions]
    single = Answered(floats(r.cheap_correct for r in records), floats(r.cheap_run.cost_of(1) for r in records))
    return Stream(
        records=tuple(records),
        anchor=single.quality,
        strong=floats(r.strong_correct for r in records),
        strong_cost=floats(r.strong_run.cost_of(1) for r in records),
        single=single,
        heuristic=tuple(
            heuristic_opinion(chat, c, task) if c is not None else None
            for (chat, c), task in zip(completions, tasks, strict=True)
        ),
        text_features=tuple(
            learned.answer_features(chat, c, task) if c is not None else {}
            for (chat, c), task in zip(completions, tasks, strict=True)
        ),
        consistency=consistency_answers(records, config.samples, embedder),
    )


def fixed_scores(
    train: Sequence[PromptRecord], stream: Stream, config: BenchConfig, notes: list[str]
) -> dict[str, Scored]:
    """The scorers that need no label from the stream: heuristic, learned, consistency, router."""
    scored: dict[str, Scored] = {}
    if any(opinion is not None for opinion in stream.heuristic):
        opinions = np.asarray([NO_OPINION if o is None else o for o in stream.heuristic], dtype=np.float64)
        scored["heuristic"] = (stream.single, opinions)
    else:
        notes.append("no answer texts: heuristic and learned scorers not run")
    model = train_learned(train, config)
    if model is not None:
        scores = [
            model.predict(chat, c, task_of(chat)) if (c := completion_for(r)) else NO_OPINION
            for r in stream.records
            for chat in (chat_for(r),)
        ]
        scored["learned"] = (stream.single, np.asarray(scores, dtype=np.float64))
    if stream.consistency is not None:
        scored["consistency"] = (stream.consistency, None)
    router = train_router(train, config)
    needed = [router.predict(r.prompt, extra=r.features) for r in stream.records]
    scored["prompt_router"] = (stream.single, 1.0 - np.asarray(needed, dtype=np.float64))
    return scored


def train_learned(train: Sequence[PromptRecord], config: BenchConfig) -> learned.LearnedModel | None:
    examples = [
        learned.LabelledExample(chat, c, task_of(chat), r.cheap_correct)
        for r in train
        if (c := completion_for(r)) is not None
        for chat in (chat_for(r),)
    ]
    if len(examples) < MIN_LEARNED_ROWS or len({e.acceptable for e in examples}) < 2:
        return None
    model, _ = learned.train_learned_model(
        examples, seed=config.seed, holdout=0.0, use_embeddings=config.use_embeddings
    )  # the stream's rest is the holdout
    return model


def train_router(train: Sequence[PromptRecord], config: BenchConfig) -> PromptRouter:
    """Taught where the strong model helps: the data records both models' grades."""
    extras = [r.features for r in train]
    return train_prompt_router(
        [r.prompt for r in train],
        [r.cheap_correct for r in train],
        seed=config.seed,
        use_embeddings=config.use_embeddings,
        extra_features=extras if any(extras) else None,
        strong_correct=[r.strong_correct for r in train],
    )


# --- agreement ----------------------------------------------------------------------------


def consistency_answers(
    records: Sequence[PromptRecord], samples: int, embedder: CachingEmbedder | None
) -> Answered | None:
    """Vote over the first `samples` cheap samples, where most rows have more than one."""
    if samples < 2 or sum(len(r.cheap_run.samples) >= 2 for r in records) * 2 < len(records):
        return None
    groups = [[s.comparable for s in r.cheap_run.samples[:samples]] for r in records]
    found = agreements(groups, [r.prompt for r in records], embedder)
    returned = [r.cheap_run.samples[a.representative] for r, a in zip(records, found, strict=True)]
    cost = [r.cheap_run.cost_of(samples) for r in records]
    quality = np.asarray([float(sample.correct) for sample in returned])
    return Answered(quality, np.asarray(cost), tuple(found), tuple(sample.text for sample in returned))


def panel_candidates(train: Sequence[PromptRecord], config: BenchConfig) -> list[tuple[str, float]]:
    """(model, mean cost) of the cheap models a panel may use, from the training part's costs."""
    if config.samples < 2 or not train:
        return []
    strong_cost = float(np.mean([r.strong_run.cost_of(1) for r in train]))
    costs: dict[str, list[float]] = {}
    for record in train:
        for model, run in record.models.items():
            if model not in (record.cheap, record.strong) and run.samples:
                costs.setdefault(model, []).append(run.cost_of(1))
    return sorted(
        (model, float(np.mean(values)))
        for model, values in costs.items()
        if len(values) >= PANEL_PRESENCE * len(train) and np.mean(values) <= config.cheap_cost_ratio * strong_cost
    )


def choose_panel(
    stream: Stream, prefix: NDArray[np.int64], candidates: Sequence[tuple[str, float]], size: int
) -> tuple[str, ...]:
    """The `size` candidates most often right on the labelled prefix (ties: the cheaper)."""

    def accuracy(model: str) -> float:
        runs = [stream.records[i].models.get(model) for i in prefix]
        return float(np.mean([run.samples[0].correct for run in runs if run is not None] or [0.0]))

    ranked = sorted(candidates, key=lambda item: (-accuracy(item[0]), item[1], item[0]))
    return tuple(model for model, _ in ranked[:size])


def panel_answers(stream: Stream, panel: Sequence[str], embedder: CachingEmbedder | None) -> Answered:
    """The preferred cheap model's answer and the panel's, voted on; the preferred one's returned."""
    members = [[r.cheap, *(m for m in panel if m in r.models)] for r in stream.records]
    groups = [[r.models[m].samples[0].comparable for m in ms] for r, ms in zip(stream.records, members, strict=True)]
    found = [as_the_gate_returns(a) for a in agreements(groups, [r.prompt for r in stream.records], embedder)]
    returned = [
        r.models[ms[a.representative]].samples[0] for r, ms, a in zip(stream.records, members, found, strict=True)
    ]
    cost = [sum(r.models[m].cost_of(1) for m in ms) for r, ms in zip(stream.records, members, strict=True)]
    quality = np.asarray([float(sample.correct) for sample in returned])
    return Answered(quality, np.asarray(cost), tuple(found), tuple(sample.text for sample in returned))


def as_the_gate_returns(found: Agreement) -> Agreement:
    """A panel's agreement as the live gate acts on it: a peer's answer is never returned, so
    when the majority is a peer's the preferred model's answer is, scored by the others' backing."""
    if found.representative == found.preferred:
        return found
    return dataclasses.replace(found, representative=found.preferred, score=found.support)


def agreements(
    groups: Sequence[Sequence[str]], prompts: Sequence[str], embedder: CachingEmbedder | None
) -> list[Agreement]:
    """`agreement()` of every group, the texts that need embedding embedded in one batch."""
    if embedder is not None:
        wanted: list[str] = []

        def collect(texts: Sequence[str]) -> None:
            wanted.extend(texts)
            return None

        for texts, prompt in zip(groups, prompts, strict=True):
            agreement(texts, prompt=prompt, embed=collect)
        embedder.prefetch(wanted)
    return [agreement(texts, prompt=prompt, embed=embedder) for texts, prompt in zip(groups, prompts, strict=True)]


class CachingEmbedder:
    """An `embed` callable that embeds each distinct text once, many at a time."""

    def __init__(self, embed: Embedder) -> None:
        self.embed = embed
        self.vectors: dict[str, NDArray[Any]] = {}
        self.unavailable = False

    def prefetch(self, texts: Iterable[str]) -> None:
        missing = sorted(set(texts) - set(self.vectors))
        if not missing or self.unavailable:
            return
        found = self.embed(missing)
        if found is None:
            self.unavailable = True
            return
        self.vectors.update(zip(missing, found, strict=True))

    def __call__(self, texts: Sequence[str]) -> NDArray[Any] | None:
        self.prefetch(texts)
        if self.unavailable:
            return None
        return np.stack([self.vectors[text] for text in texts])


# --- the combined scorer --------------------------------------------------------------------


def combined_scores(
    stream: Stream, prefix: NDArray[np.int64], scored: Mapping[str, Scored], config: BenchConfig
) -> Scored | None:
    """The signal model fitted on the labelled prefix, scoring the whole stream: P(escalating
    this answer would not make it better).

    Its cheap tier answers as the richest agreement available does (the panel, else
    the samples, else the single answer). The prefix rows get out-of-fold scores, so a
    threshold calibrated on them is honest.
    """
    answered = next((scored[name][0] for name in ("cross_model", "consistency") if name in scored), stream.single)
    found = answered.agreements or (None,) * len(stream)
    # The learned scorer's score of the cheap model's first answer (it was trained on those).
    learned_scores: Sequence[float | None] = (
        [float(v) if stream.records[i].cheap_text is not None else None for i, v in enumerate(scored["learned"][1])]
        if "learned" in scored and scored["learned"][1] is not None
        else [None] * len(stream)
    )
    signals = [
        Signals(agreement=a, heuristic=h, text=t, learned=s)
        for a, (h, t), s in zip(found, returned_answer_signals(stream, answered), learned_scores, strict=True)
    ]
    if not any(a is not None for a in found) and not any(stream.text_features):
        return None
    # "Escalating would not help": the answer returned was right, or the strong one is wrong
    # too. Rows both tiers miss are not worth a strong call (the router learns the same).
    labels = [bool(answered.quality[i]) or not bool(stream.strong[i]) for i in prefix]
    train_rows = [signals[i] for i in prefix]
    model = train_signal_model(train_rows, labels, seed=config.seed)
    scores = model.predict_many(signals)
    scores[prefix] = out_of_fold_scores(train_rows, labels, seed=config.seed, whole=model)
    return answered, scores


def returned_answer_signals(stream: Stream, answered: Answered) -> list[tuple[float | None, Mapping[str, float]]]:
    """The heuristic's opinion and the text features of the answer the cheap tier returns
    (of the cheap model's first answer where the returned one's text was not recorded)."""
    found = []
    for i, record in enumerate(stream.records):
        text = answered.texts[i] if answered.texts else None
        if text is None or text == record.cheap_text:
            found.append((stream.heuristic[i], stream.text_features[i]))
            continue
        chat, completion = chat_for(record), answer_completion(text)
        task = task_of(chat)
        found.append((heuristic_opinion(chat, completion, task), learned.answer_features(chat, completion, task)))
    return found


# --- results --------------------------------------------------------------------------------


def outcomes(stream: Stream, scored: Scored, rows: NDArray[np.int64], *, cascade: bool = True) -> Outcomes:
    answered, scores = scored
    if scores is None:
        scores = np.asarray([a.score if a is not None else NO_OPINION for a in answered.agreements], dtype=np.float64)
    whole = Outcomes(scores, answered.quality, stream.anchor, stream.strong, answered.cost, stream.strong_cost, cascade)
    return whole.take(rows)


def result_of(
    name: str,
    scored: Scored,
    stream: Stream,
    prefix: NDArray[np.int64],
    rest: NDArray[np.int64],
    config: BenchConfig,
) -> ScorerResult:
    cascade = name != "prompt_router"
    judged = outcomes(stream, scored, rest, cascade=cascade)
    baseline = float(judged.strong_cost.sum())
    coverage = None
    if name == "heuristic":
        coverage = float(np.mean([stream.heuristic[i] is not None for i in rest]))
    return ScorerResult(
        scorer=name,
        mode="cascade" if cascade else "router",
        figures=figures(judged),
        intervals=bootstrap(judged, resamples=config.resamples, seed=config.seed),
        cheap_quality=float(judged.quality.mean()),
        cheap_cost_share=float(judged.cheap_cost.sum()) / baseline if baseline else math.nan,
        coverage=coverage,
        calibrated=calibrated(outcomes(stream, scored, prefix, cascade=cascade), judged, config),
    )


def curve_point(
    name: str,
    scored: Scored,
    stream: Stream,
    prefix: NDArray[np.int64],
    rest: NDArray[np.int64],
    share: float,
    config: BenchConfig,
) -> CurvePoint:
    judged = outcomes(stream, scored, rest)
    return CurvePoint(
        label_share=share,
        n_labelled=len(prefix),
        n_test=len(rest),
        scorer=name,
        figures=figures(judged),
        calibrated=calibrated(outcomes(stream, scored, prefix), judged, config),
    )


def reference_result(name: str, stream: Stream, rest: NDArray[np.int64], config: BenchConfig) -> ScorerResult:
    """ "random" (a constant score: every order equally likely) or "oracle" (knows both outcomes)."""
    if name == "random":
        scores = np.zeros(len(stream), dtype=np.float64)
    else:
        gain = stream.strong - stream.anchor
        jitter = np.asarray([hash_fraction(r.prompt, 0) for r in stream.records], dtype=np.float64)
        # The strong model's wins first, then ties, then its losses; a sliver of hash orders
        # each group so the curve escalates rows one at a time.
        scores = (1.0 - gain) / 2.0 * 0.98 + jitter * 0.01
    judged = outcomes(stream, (stream.single, scores), rest, cascade=False)
    return ScorerResult(
        scorer=name,
        mode="router",
        figures=figures(judged),
        intervals=bootstrap(judged, resamples=config.resamples, seed=config.seed),
        cheap_quality=float(judged.quality.mean()),
        cheap_cost_share=math.nan,
    )


def calibrated(labelled: Outcomes, judged: Outcomes, config: BenchConfig) -> dict[str, float] | None:
    """The threshold the labelled rows pick for `quality_share` of the strong quality, applied to the rest."""
    rows = [
        ReplayRow(
            score=float(labelled.score[i]),
            cheap_quality=float(labelled.quality[i]),
            strong_quality=float(labelled.strong[i]),
            cheap_cost=Decimal(repr(float(labelled.cheap_cost[i]))),
            strong_cost=Decimal(repr(float(labelled.strong_cost[i]))),
        )
        for i in range(len(labelled))
    ]
    threshold = calibrate_threshold(rows, quality_share=config.quality_share, cascade=labelled.cascade)
    if threshold is None or len(judged) == 0:
        return None
    escalated = judged.score < threshold
    quality = float(np.where(escalated, judged.strong, judged.quality).mean())
    paid = judged.cheap_cost if judged.cascade else np.where(escalated, 0.0, judged.cheap_cost)
    cost = float((paid + np.where(escalated, judged.strong_cost, 0.0)).sum())
    baseline = float(judged.strong_cost.sum())
    strong_quality = float(judged.strong.mean())
    return {
        "threshold": threshold,
        "strong_share": float(escalated.mean()),
        "quality_ratio": quality / strong_quality if strong_quality else math.nan,
        "cost_share": cost / baseline if baseline else math.nan,
    }


# --- requests -------------------------------------------------------------------------------


BENCH_POLICY: Final = PolicySnapshot(
    id=0,
    name="bench",
    version=1,
    tiers=(),
    task_rules=tuple(TaskRuleSnapshot(i, name, pattern, 0) for i, (name, pattern, _) in enumerate(DEFAULT_TASK_RULES)),
)


def task_of(chat: ChatRequest) -> str:
    """The task the product's default rules give the request (the scorers read it)."""
    return classify(chat, BENCH_POLICY).category


def chat_for(record: PromptRecord) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=record.prompt),))


def completion_for(record: PromptRecord) -> Completion | None:
    """The cheap model's first answer as a completion, or None when its text was not recorded."""
    text = record.cheap_text
    return answer_completion(text) if text is not None else None


def answer_completion(text: str) -> Completion:
    """A recorded answer as a completion: it finished, and no usage was recorded."""
    return Completion(
        text=text, finish_reason="stop", input_tokens=0, output_tokens=estimate_tokens(text), latency_ms=0.0
    )


def minilm() -> Embedder | None:
    """The local MiniLM's `embed`, or None when its package is not installed."""
    return embeddings.embed if embeddings.available() else None
