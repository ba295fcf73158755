"""The offline quality benchmark: figures with intervals, the data formats, the combined scorer, a whole run.

Every data set here is made inline; nothing reads ../shared.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from routing.engine.agreement import Agreement, lexical_embed
from routing.engine.offline.benchmark import BenchConfig, run_dataset, split_rows
from routing.engine.offline.combined import SignalModel, Signals, out_of_fold_scores, train_signal_model
from routing.engine.offline.datasets import (
    ModelRun,
    PromptRecord,
    Sample,
    file_kind,
    load_records,
    read_jsonl,
    write_jsonl,
)
from routing.engine.offline.metrics import Outcomes, bootstrap, figures


def outcomes(scores: list[float], cheap: list[float], strong: list[float], **kwargs: object) -> Outcomes:
    n = len(scores)
    arrays = {
        "score": np.asarray(scores, dtype=np.float64),
        "quality": np.asarray(kwargs.get("returned", cheap), dtype=np.float64),
        "anchor": np.asarray(cheap, dtype=np.float64),
        "strong": np.asarray(strong, dtype=np.float64),
        "cheap_cost": np.full(n, float(kwargs.get("cheap_cost", 0.01))),  # type: ignore[arg-type]
        "strong_cost": np.full(n, 1.0),
    }
    return Outcomes(**arrays, cascade=bool(kwargs.get("cascade", True)))


# The five requests of tests/engine/test_replay.py: the strong model wins A, B and D, loses C, ties E.
TABLE = outcomes([0.1, 0.3, 0.5, 0.7, 0.9], [0, 0, 1, 0, 1], [1, 1, 0, 1, 1])


# --- figures -------------------------------------------------------------------------------


def test_figures_follow_the_hand_computed_curve() -> None:
    found = figures(TABLE)

    assert found["apgr"] == pytest.approx(0.7)  # as replay.routing_metrics
    assert found["cpt50"] == pytest.approx(0.2)
    # PGR 0.5 at 20% and 1.0 at 40%: 0.8 is reached three fifths of the way.
    assert found["cpt80"] == pytest.approx(0.32)
    assert found["cpt50_cost"] == pytest.approx(1.05 / 5)
    # Quality 0.76 = 95% of 0.8 lies four fifths of the way from 1 to 2 escalations: cost 0.05 + 1.8.
    assert found["savings_at_95"] == pytest.approx(1 - 1.85 / 5)


def test_equal_scores_escalate_in_random_order_on_average() -> None:
    rng = random.Random(0)
    cheap = [float(rng.random() < 0.6) for _ in range(200)]
    strong = [float(rng.random() < 0.9) for _ in range(200)]

    found = figures(outcomes([0.5] * 200, cheap, strong, cascade=False))

    assert found["apgr"] == pytest.approx(0.5)
    assert found["cpt50"] == pytest.approx(0.5)
    assert found["cpt80"] == pytest.approx(0.8)


def test_a_cheap_tier_returning_better_answers_starts_above_zero() -> None:
    cheap, strong = [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]

    found = figures(outcomes([0.1, 0.9, 0.8, 0.7], cheap, strong, returned=[0.0, 1.0, 1.0, 1.0]))

    assert found["cpt50"] == 0.0  # the majority answer already recovers half the gap
    assert found["cpt80"] == pytest.approx(0.15)  # PGR 0.5 with none escalated, 1.0 with one of four


def test_the_cost_axis_counts_every_cheap_call() -> None:
    one = figures(outcomes([0.1, 0.3, 0.5, 0.7, 0.9], [0, 0, 1, 0, 1], [1, 1, 0, 1, 1], cheap_cost=0.01))
    five = figures(outcomes([0.1, 0.3, 0.5, 0.7, 0.9], [0, 0, 1, 0, 1], [1, 1, 0, 1, 1], cheap_cost=0.05))

    assert five["cpt50"] == one["cpt50"]
    assert five["cpt50_cost"] == pytest.approx(one["cpt50_cost"] + 0.04)


def test_no_quality_gap_gives_nan_not_an_error() -> None:
    found = figures(outcomes([0.1, 0.2], [1.0, 1.0], [1.0, 1.0]))

    assert math.isnan(found["apgr"]) and math.isnan(found["cpt80"])


def test_bootstrap_intervals_are_seeded_and_cover_the_figure() -> None:
    rng = random.Random(1)
    cheap = [float(rng.random() < 0.6) for _ in range(300)]
    strong = [1.0] * 300
    scores = [c + rng.random() for c in cheap]  # an informative scorer
    judged = outcomes(scores, cheap, strong)

    first = bootstrap(judged, resamples=50, seed=3)
    again = bootstrap(judged, resamples=50, seed=3)

    assert first == again
    low, high = first["apgr"]
    assert low <= figures(judged)["apgr"] <= high
    assert high - low < 0.2


# --- data formats ----------------------------------------------------------------------------


def record(i: int, *, cheap_right: bool = True, strong_right: bool = True) -> PromptRecord:
    samples = tuple(Sample(correct=cheap_right, answer="42", cost=0.001) for _ in range(3))
    return PromptRecord(
        id=str(i),
        prompt=f"Question {i}: how many?",
        models={
            "small": ModelRun(samples=samples),
            "large": ModelRun(samples=(Sample(correct=strong_right, text="It is 42."),), cost=0.03),
        },
        cheap="small",
        strong="large",
        category="math",
        features={"topic": "sums"},
    )


def test_the_jsonl_format_round_trips(tmp_path: Path) -> None:
    records = [record(1), record(2, cheap_right=False)]
    path = tmp_path / "cascade.jsonl"

    write_jsonl(records, path)
    loaded = read_jsonl(path, feature_names=["topic"])

    assert loaded == records
    assert read_jsonl(path)[0].features == {}  # features are used only when asked for
    assert file_kind(path) == "jsonl"
    assert loaded[1].cheap_correct is False
    assert loaded[0].strong_run.cost_of(1) == 0.03
    assert loaded[0].cheap_run.cost_of(2) == pytest.approx(0.002)


def test_a_jsonl_record_without_the_cheap_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "1", "prompt": "p", "models": {}, "cheap": "a", "strong": "b"}) + "\n")

    with pytest.raises(ValueError, match=r"line 1.*cheap model 'a' has no samples"):
        read_jsonl(path)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_routellm_csv_uses_only_declared_feature_columns(tmp_path: Path) -> None:
    weak, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    # A third model's correctness coded 0.0/1.0 is a label: it must never become a feature.
    path = write_csv(
        tmp_path / "mmlu_responses.csv",
        ["subject", "prompt", weak, strong, "other-model"],
        [["algebra", "Q1?\nA. 1\nB. 2\nAnswer:", "True", "False", "1.0"]],
    )

    (plain,) = load_records(path)
    (declared,) = load_records(path, feature_columns=["subject"])

    assert plain.features == {}
    assert declared.features == {"subject": "algebra"}
    assert (plain.cheap_correct, plain.strong_correct) == (True, False)
    assert plain.cheap_text is None and plain.cheap_run.cost_of(1) > 0
    with pytest.raises(ValueError, match="missing column"):
        load_records(path, feature_columns=["difficulty"])


def test_a_routerbench_csv_keeps_every_model_and_its_cost(tmp_path: Path) -> None:
    models = ["mistralai/mistral-7b-chat", "gpt-4-1106-preview", "other"]
    header = ["", "sample_id", "prompt", "eval_name", *models]
    header += [f"{m}|model_response" for m in models] + [f"{m}|total_cost" for m in models]
    rows = [
        [
            0,
            "arc.1",
            "['Q?\\nA) x\\nB) y\\nAnswer:']",
            "arc",
            "0.0",
            "1.0",
            "",
            "['A\\n']",
            "['B']",
            "['B']",
            1e-4,
            5e-3,
            1e-3,
        ],
        [1, "arc.1", "['dup']", "arc", "0.0", "1.0", "1.0", "['A']", "['B']", "['B']", 1e-4, 5e-3, 1e-3],
        [2, "arc.2", "['Q2?']", "arc", "", "1.0", "1.0", "['A']", "['B']", "['B']", 1e-4, 5e-3, 1e-3],
    ]
    path = write_csv(tmp_path / "arc_challenge_train.csv", header, rows)

    records = load_records(path)

    assert file_kind(path) == "routerbench"
    assert [r.id for r in records] == ["arc.1"]  # the duplicate id and the row without a cheap score are dropped
    (only,) = records
    assert only.prompt == "Q?\nA) x\nB) y\nAnswer:"
    assert only.cheap_text == "A\n"
    assert set(only.models) == {"mistralai/mistral-7b-chat", "gpt-4-1106-preview"}  # "other" has no score here
    assert only.strong_run.cost_of(1) == pytest.approx(5e-3)


def test_a_mot_file_gives_the_cheap_samples_judged_against_the_gold_answer(tmp_path: Path) -> None:
    row = {
        "id": "7",
        "question": "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?",
        "gold": "05/01/2021",
        "answers": {
            "gpt35_cot1": ["05/01/2021", "So today is May 1, 2021.", None, "04/30/2021"],
            "gpt4_greedy_cot1": ["05/01/2021"],
        },
        "gen_chars": {"gpt35_cot1": [40, 80, 40, 40], "gpt4_greedy_cot1": [60]},
        "first_text": {"gpt35_cot1": "Explain: one day after April 30.\nA: 05/01/2021"},
    }
    path = tmp_path / "date.jsonl"
    path.write_text(json.dumps(row) + "\n")

    (found,) = load_records(path)

    assert file_kind(path) == "mot"
    assert (found.cheap, found.strong) == ("gpt35_cot1", "gpt4_greedy_cot1")
    assert [s.correct for s in found.cheap_run.samples] == [True, True, False, False]  # the text states the date
    assert [s.answer for s in found.cheap_run.samples][:2] == ["05/01/2021", "05/01/2021"]
    assert found.cheap_text == "Explain: one day after April 30.\nA: 05/01/2021"
    assert found.strong_run.cost_of(1) > 5 * found.cheap_run.cost_of(1)  # GPT-4 against GPT-3.5 list prices


def test_mot_numbers_are_right_within_a_tolerance(tmp_path: Path) -> None:
    row = {
        "id": "1",
        "question": "How many eggs?",
        "gold": "18.0",
        "answers": {"llama2_13b_pot1": [18.00001, 17.0], "gpt4_greedy_cot1": [18.0]},
    }
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "2", "answers": {"gpt4_greedy_cot1": [1]}}))

    records = load_records(path)

    assert len(records) == 1  # the question without cheap samples is dropped
    assert [s.correct for s in records[0].cheap_run.samples] == [True, False]


# --- the combined scorer ---------------------------------------------------------------------


def signals(rng: random.Random, good: bool) -> Signals:
    share = rng.choice([0.8, 1.0]) if good else rng.choice([0.4, 0.6])
    found = Agreement(score=share, representative=0, method="vote", answers=("1",) * 5, votes={"1": 5})
    return Signals(agreement=found, heuristic=None, text={"log_words": rng.random()})


def test_the_combined_model_learns_from_agreement_and_round_trips() -> None:
    rng = random.Random(0)
    labels = [i % 3 != 0 for i in range(90)]
    rows = [signals(rng, good) for good in labels]

    model = train_signal_model(rows, labels, seed=0)
    loaded = SignalModel.from_dict(json.loads(json.dumps(model.to_dict())))
    scores = model.predict_many(rows)

    assert "agreement" in model.names and "heuristic_doubt" not in model.names  # no opinion: not a signal
    assert scores[np.asarray(labels)].min() > scores[~np.asarray(labels)].max()
    assert [loaded.predict(r) for r in rows[:5]] == pytest.approx(list(scores[:5]))


def test_with_few_labels_the_combined_model_leans_on_its_strongest_signal() -> None:
    rng = random.Random(2)
    labels = [rng.random() < 0.6 for _ in range(40)]
    # The learned score separates the classes; text features and a weak heuristic are noise.
    rows = [
        Signals(
            heuristic=rng.random(),
            learned=min(0.99, max(0.01, (0.7 if good else 0.3) + rng.gauss(0.0, 0.15))),
            text={"log_words": rng.random(), "log_lines": rng.random()},
        )
        for good in labels
    ]

    model = train_signal_model(rows, labels, seed=0)
    held_out = out_of_fold_scores(rows, labels, seed=0, whole=model)

    assert model.metadata["anchor"] == "learned"
    assert "learned_logit" in model.names
    assert any(key.startswith("single:heuristic") for key in model.metadata["cv_log_loss"])
    assert held_out.shape == (40,)
    loaded = SignalModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert [loaded.predict(r) for r in rows[:3]] == pytest.approx(list(model.predict_many(rows[:3])))


def agreement_and_learned(seed: int) -> tuple[list[Signals], list[bool]]:
    """30 labels; agreement and the learned score both follow one noisy hint of the label."""
    rng = random.Random(seed)
    labels = [rng.random() < 0.7 for _ in range(30)]
    rows = []
    for good in labels:
        hint = good if rng.random() < 0.8 else not good
        share = rng.choice([0.8, 1.0]) if hint else rng.choice([0.4, 0.6])
        found = Agreement(score=share, representative=0, method="vote", answers=("1",) * 5, votes={"1": 5})
        learned = min(0.95, max(0.05, (0.65 if hint else 0.35) + rng.gauss(0.0, 0.1)))
        rows.append(Signals(agreement=found, learned=learned))
    return rows, labels


@pytest.mark.parametrize(
    ("seed", "anchor"),
    [
        (3, "agreement"),  # the learned score's loss is a little lower, within noise
        (1, "learned"),  # the learned score's loss is lower by well over a standard error
    ],
)
def test_agreement_is_kept_unless_another_signal_is_clearly_better(seed: int, anchor: str) -> None:
    rows, labels = agreement_and_learned(seed)

    model = train_signal_model(rows, labels, seed=0)

    losses = model.metadata["cv_log_loss"]
    assert losses["single:learned"] < losses["single:agreement"]
    assert model.metadata["anchor"] == anchor


def test_out_of_fold_scores_never_come_from_a_model_that_saw_the_row() -> None:
    rng = random.Random(1)
    labels = [rng.random() < 0.5 for _ in range(40)]
    rows = [Signals(text={"log_words": rng.random()}) for _ in labels]  # noise only

    in_sample = train_signal_model(rows, labels, seed=0).predict_many(rows)
    held_out = out_of_fold_scores(rows, labels, seed=0)

    assert held_out.shape == (40,)
    assert not np.allclose(held_out, in_sample)


# --- a whole run -------------------------------------------------------------------------------


def synthetic(n: int = 240, seed: int = 0) -> list[PromptRecord]:
    """A cheap model that scatters when it is wrong and a panel that mostly knows better."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        right = rng.random() < 0.6
        strong_right = rng.random() < 0.95
        answers = ["7"] * 5 if right else [rng.choice(["3", "4", "5", "7"]) for _ in range(5)]
        answers[0] = "7" if right else "3"
        cheap = ModelRun(
            samples=tuple(Sample(correct=a == "7", text=f"So it is {a}.", answer=a, cost=0.001) for a in answers)
        )
        others = {
            f"peer{k}": ModelRun(samples=(Sample(correct=rng.random() < 0.8, text="It is 7.", cost=0.002),))
            for k in range(3)
        }
        strong = ModelRun(samples=(Sample(correct=strong_right, text="It is 7."),), cost=0.05)
        prompt = f"Problem {i}: Sam has {i} apples and eats some. How many apples are left?"
        records.append(PromptRecord(str(i), prompt, {"cheap": cheap, "strong": strong, **others}, "cheap", "strong"))
    return records


def test_a_whole_run_reports_every_scorer_with_intervals_and_a_learning_curve() -> None:
    config = BenchConfig(resamples=30)

    report = run_dataset("synthetic", synthetic(), config, embed=lexical_embed)

    names = [result.scorer for result in report.results]
    assert names == [
        "heuristic",
        "learned",
        "consistency",
        "cross_model",
        "combined",
        "prompt_router",
        "random",
        "oracle",
    ]
    assert report.n_labelled + report.n_test == report.n_eval
    assert report.n_labelled == round(0.2 * report.n_eval)
    assert len(report.panel) == 3  # k = 5 allows the preferred model and four more: there are three
    consistency = report.result("consistency")
    assert consistency is not None and consistency.figures["apgr"] > 0.7
    assert consistency.cheap_cost_share > report.result("learned").cheap_cost_share  # type: ignore[union-attr]
    assert {point.label_share for point in report.learning_curve} == {0.05, 0.1, 0.2}
    random_row = report.result("random")
    assert random_row is not None and random_row.figures["cpt80"] == pytest.approx(0.8)
    json.dumps(report.to_dict(), allow_nan=False)


def test_the_split_is_reproducible_and_seeded() -> None:
    rows = synthetic(n=200)

    train, evaluate = split_rows(rows, eval_fraction=0.5, seed=0)
    again, _ = split_rows(list(reversed(rows)), eval_fraction=0.5, seed=0)
    other, _ = split_rows(rows, eval_fraction=0.5, seed=1)

    assert {r.id for r in train} == {r.id for r in again}
    assert {r.id for r in train} != {r.id for r in other}
    assert not {r.id for r in train} & {r.id for r in evaluate}


def test_too_few_rows_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too few rows"):
        run_dataset("tiny", synthetic(n=8), BenchConfig(resamples=0))
