"""`manage.py bench_routing` on small RouteLLM-format files made here (no database needed)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from routing.engine.offline.benchmark import STRONG_MODEL as STRONG
from routing.engine.offline.benchmark import WEAK_MODEL as WEAK
from routing.engine.offline.benchmark import hash_fraction, load_dataset, split_rows

SUMMARY_KEYS = {"scorer", "cpt50", "cpt80", "apgr", "savings_at_95"}


def gsm8k_like(path: Path, n: int = 120, seed: int = 0) -> Path:
    """Word problems; the weak model's wrong answers state a wrong sum, as Mixtral's often do."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["prompt", WEAK, STRONG, f"{WEAK}_response", f"{STRONG}_response"])
        for i in range(n):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            weak_right, strong_right = i % 3 != 0, i % 7 != 0
            stated = a + b if weak_right else a + b + rng.choice([-10, 1, 10])
            prompt = f"Problem {i}: Sam has {a} stamps and gets {b} more. How many stamps does Sam have in total?"
            weak_answer = f"Sam has {a} + {b} = {stated} stamps.\n#### {stated}"
            strong_answer = f"Sam starts with {a} stamps and gets {b}: {a} + {b} = {a + b}.\n#### {a + b}"
            writer.writerow([prompt, weak_right, strong_right, weak_answer, strong_answer])
    return path


def mmlu_like(path: Path, n: int = 160) -> Path:
    """Multiple choice, no responses, a subject column that predicts the weak model's errors."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["subject", "prompt", WEAK, STRONG])
        for i in range(n):
            subject = "abstract_algebra" if i % 2 else "marketing"
            prompt = f"Question {i} about {subject.replace('_', ' ')}?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
            writer.writerow([subject, prompt, subject == "marketing" or i % 3 == 0, True])
    return path


def bench(*args: str) -> str:
    out = io.StringIO()
    call_command("bench_routing", *args, stdout=out)
    return out.getvalue()


def test_json_output_is_one_line_listing_every_scorer(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv")

    output = bench("--split-from", str(data), "--json", "--seed", "0")

    assert output.count("\n") == 1 and output.endswith("\n")
    results = json.loads(output)
    assert [r["scorer"] for r in results] == ["heuristic", "learned", "prompt_router"]
    for result in results:
        assert set(result) == SUMMARY_KEYS
        assert all(0.0 <= result[key] <= 1.0 for key in ("cpt50", "cpt80"))
        assert result["apgr"] > 0.0  # may pass 1: a mix can beat the strong model where the weak one wins
        assert -1.0 <= result["savings_at_95"] <= 1.0


def test_a_cascade_that_rechecks_the_sums_beats_random_routing(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=150)

    results = {r["scorer"]: r for r in json.loads(bench("--split-from", str(data), "--json"))}

    # Every wrong weak answer states a wrong sum: both cascades find them all first.
    assert results["heuristic"]["cpt80"] < 0.5
    assert results["learned"]["cpt80"] < 0.5
    assert results["learned"]["apgr"] > 0.7


def test_without_responses_only_the_router_runs(tmp_path: Path) -> None:
    data = mmlu_like(tmp_path / "mmlu_responses.csv")

    (result,) = json.loads(bench("--split-from", str(data), "--json"))

    assert result["scorer"] == "prompt_router"
    assert result["cpt50"] < 0.5  # the subject column gives the errors away


def test_train_and_eval_files_and_a_readable_table(tmp_path: Path) -> None:
    train = gsm8k_like(tmp_path / "train.csv", n=80, seed=1)
    evaluate = gsm8k_like(tmp_path / "eval.csv", n=60, seed=2)

    output = bench("--train", str(train), "--eval", str(evaluate))

    assert output.startswith("train 80 rows, eval 60 rows")
    for name in ("heuristic", "learned", "prompt_router", "oracle"):
        assert any(line.startswith(name) for line in output.splitlines())


def test_contaminated_prompts_next_to_the_file_are_dropped(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=50)
    prompts = [row.prompt for row in load_dataset(data)]
    with open(tmp_path / "gsm8k_contaminated_prompts.jsonl", "w", encoding="utf-8") as file:
        for prompt in prompts[:3]:
            file.write(json.dumps({"train_prompt": "x", "eval_prompt": prompt, "train_idx": 0, "eval_idx": 0}) + "\n")

    kept = load_dataset(data)

    assert len(kept) == 47
    assert not {row.prompt for row in kept} & set(prompts[:3])


def test_the_split_is_reproducible_and_seeded(tmp_path: Path) -> None:
    rows = load_dataset(gsm8k_like(tmp_path / "gsm8k_responses.csv", n=200))

    train, evaluate = split_rows(rows, eval_fraction=0.5, seed=0)
    again, _ = split_rows(list(reversed(rows)), eval_fraction=0.5, seed=0)
    other, _ = split_rows(rows, eval_fraction=0.5, seed=1)

    assert {r.prompt for r in train} == {r.prompt for r in again}
    assert {r.prompt for r in train} != {r.prompt for r in other}
    assert not {r.prompt for r in train} & {r.prompt for r in evaluate}
    assert 60 < len(evaluate) < 140
    assert all(hash_fraction(r.prompt, 0) < 0.5 for r in evaluate)


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--train", "a.csv"),
        ("--split-from", "a.csv", "--train", "b.csv"),
        ("--split-from", "a.csv", "--eval-fraction", "1.5"),
        ("--split-from", "/nonexistent/file.csv"),
    ],
)
def test_bad_arguments_are_command_errors(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        bench(*args)
