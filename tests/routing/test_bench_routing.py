"""`manage.py bench_routing` on small data sets made here, in every format it reads (no database needed)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from routing.engine.offline.benchmark import STRONG_MODEL as STRONG
from routing.engine.offline.benchmark import WEAK_MODEL as WEAK
from routing.engine.offline.benchmark import load_dataset
from routing.engine.offline.datasets import ModelRun, PromptRecord, Sample, write_jsonl

FIGURES = {"cpt50", "cpt80", "cpt50_cost", "cpt80_cost", "apgr", "savings_at_95"}
FAST = ("--resamples", "20", "--label-shares", "0.1,0.2")


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
    """Multiple choice, no responses, a subject column that gives the weak model's errors away."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["subject", "prompt", WEAK, STRONG])
        for i in range(n):
            subject = "abstract_algebra" if i % 2 else "marketing"
            prompt = f"Question {i}?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
            writer.writerow([subject, prompt, subject == "marketing" or i % 3 == 0, True])
    return path


def sampled_jsonl(path: Path, n: int = 120, seed: int = 0) -> Path:
    """This project's format: five cheap samples that agree when the cheap model is right."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        right = rng.random() < 0.6
        answers = ["05/01/2021"] * 5 if right else [rng.choice(["04/30/2021", "05/02/2021"]) for _ in range(5)]
        cheap = ModelRun(samples=tuple(Sample(correct=right, answer=a, cost=0.001) for a in answers))
        strong = ModelRun(samples=(Sample(correct=rng.random() < 0.95, answer="05/01/2021"),), cost=0.03)
        prompt = f"Case {i}: yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?"
        records.append(PromptRecord(str(i), prompt, {"small": cheap, "large": strong}, "small", "large"))
    write_jsonl(records, path)
    return path


def bench(*args: str) -> str:
    out = io.StringIO()
    call_command("bench_routing", *args, stdout=out)
    return out.getvalue()


def report(*args: str) -> dict[str, Any]:
    return json.loads(bench(*args, *FAST, "--json"))  # type: ignore[no-any-return]


def scorers(found: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {result["scorer"]: result for result in found["datasets"][name]["results"]}


def test_json_output_lists_every_scorer_with_figures_and_intervals(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv")

    found = report(f"gsm8k={data}")

    results = scorers(found, "gsm8k")
    assert list(results) == ["heuristic", "learned", "combined", "prompt_router", "random", "oracle"]
    for result in results.values():
        assert set(result) >= FIGURES
        assert set(result["ci"]) == FIGURES
        assert 0.0 <= result["cpt80"] <= 1.0
    assert found["config"]["label_shares"] == [0.1, 0.2]
    assert results["heuristic"]["coverage"] == 1.0  # every answer is arithmetic it can check


def test_a_cascade_that_rechecks_the_sums_beats_random_routing(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=150)

    results = scorers(report("--split-from", str(data)), "gsm8k_responses")

    # Every wrong weak answer states a wrong sum: the cascades find them first.
    assert results["heuristic"]["cpt80"] < 0.5
    assert results["learned"]["cpt80"] < 0.5
    assert results["learned"]["apgr"] > 0.7


def test_without_responses_only_the_router_runs_and_the_subject_is_not_a_feature(tmp_path: Path) -> None:
    data = mmlu_like(tmp_path / "mmlu_responses.csv")

    blind = scorers(report(f"mmlu={data}"), "mmlu")
    told = scorers(report(f"mmlu={data}", "--feature-column", "subject"), "mmlu")

    assert list(blind) == ["prompt_router", "random", "oracle"]
    assert told["prompt_router"]["cpt50"] < 0.35  # declared, the subject gives the errors away
    assert blind["prompt_router"]["cpt50"] > told["prompt_router"]["cpt50"]


def test_samples_in_the_jsonl_format_give_a_consistency_scorer(tmp_path: Path) -> None:
    data = sampled_jsonl(tmp_path / "dates.jsonl")

    found = report(f"dates={data}")

    results = scorers(found, "dates")
    assert "consistency" in results and "combined" in results
    assert results["consistency"]["cpt80"] < 0.5
    assert results["consistency"]["cheap_cost_share"] > results["prompt_router"]["cheap_cost_share"]
    curve = found["datasets"]["dates"]["learning_curve"]
    assert {point["label_share"] for point in curve} == {0.1, 0.2}


def test_train_and_eval_files_and_readable_tables(tmp_path: Path) -> None:
    train = gsm8k_like(tmp_path / "train.csv", n=80, seed=1)
    evaluate = gsm8k_like(tmp_path / "eval.csv", n=60, seed=2)

    output = bench("--train", str(train), "--eval", str(evaluate), *FAST)

    assert output.startswith(f"eval: {evaluate}")
    assert "140 rows: 80 train, 60 eval" in output
    for name in ("heuristic", "learned", "combined", "prompt_router", "random", "oracle", "learning curve"):
        assert name in output
    assert "summary:" in output


def test_the_report_is_written_as_strict_json(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=60)
    out = tmp_path / "results" / "routing.json"

    bench(f"gsm8k={data}", *FAST, "--out", str(out))

    written = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the report"))
    assert set(written["datasets"]) == {"gsm8k"}


def test_contaminated_prompts_next_to_the_file_are_dropped(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=50)
    prompts = [row.prompt for row in load_dataset(data)]
    with open(tmp_path / "gsm8k_contaminated_prompts.jsonl", "w", encoding="utf-8") as file:
        for prompt in prompts[:3]:
            file.write(json.dumps({"train_prompt": "x", "eval_prompt": prompt, "train_idx": 0, "eval_idx": 0}) + "\n")

    kept = load_dataset(data)

    assert len(kept) == 47
    assert not {row.prompt for row in kept} & set(prompts[:3])


def test_a_data_set_converts_to_the_jsonl_format(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=20)
    target = tmp_path / "gsm8k.jsonl"

    bench("--split-from", str(data), "--convert", str(target))

    lines = target.read_text().splitlines()
    assert len(lines) == 20
    first = json.loads(lines[0])
    assert (first["cheap"], first["strong"]) == (WEAK, STRONG)
    assert first["models"][WEAK]["samples"][0]["text"].startswith("Sam has")


def test_converted_data_is_never_written_into_the_project(tmp_path: Path) -> None:
    data = gsm8k_like(tmp_path / "gsm8k_responses.csv", n=20)

    with pytest.raises(CommandError, match="outside the project"):
        bench("--split-from", str(data), "--convert", "bench/results/copied.jsonl")


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--train", "a.csv"),
        ("--split-from", "a.csv", "--eval-fraction", "1.5"),
        ("--split-from", "/nonexistent/file.csv"),
        ("x=/nonexistent/file.jsonl",),
        ("--split-from", "a.csv", "--label-shares", "0.2,1.5"),
    ],
)
def test_bad_arguments_are_command_errors(args: tuple[str, ...]) -> None:
    with pytest.raises(CommandError):
        bench(*args)
