"""Cascade data sets in one format, and converters from the published ones.

One `PromptRecord` per prompt: every model's samples (text and/or extracted answer,
whether it was right, what the call cost), which model is the cheap one and which the
strong one. On disk it is JSON Lines, one object per prompt (the format is documented
in docs/quality-benchmark.md):

    {"id": "17", "prompt": "...", "category": "math",
     "models": {"mixtral": {"samples": [{"text": "...", "answer": "18", "correct": true, "cost": 0.0001}]},
                "gpt-4": {"samples": [{"text": "...", "correct": true}], "cost": 0.004}},
     "cheap": "mixtral", "strong": "gpt-4"}

Converters read the published files as they are, at run time (they are never copied
into the project):

- RouteLLM CSVs (`prompt`, one correctness column per model, `<model>_response` texts
  when recorded); costs estimated from token counts at the prices given. Only the
  feature columns asked for are kept: any other column may be a label (MMLU's `subject`
  is not something a gateway sees, so it is not a feature unless asked for).
- RouterBench CSVs (RouterDC's copy): every model's response, 0/1 score and USD cost.
- MoT JSONL: the cheap variant's samples (extracted answers; the first one's text), the
  strong variant's answer, the gold answer. Some of MoT's "answers" are whole texts its
  parser could not read; they are extracted (`answers.extract_answer`) and judged like
  the others.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from routing.engine.answers import canonical_number, extract_answer
from routing.engine.tokens import CHARS_PER_TOKEN, TOKENS_PER_MESSAGE, estimate_tokens

ROUTELLM_WEAK: Final = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_STRONG: Final = "gpt-4-1106-preview"
ROUTERBENCH_CHEAP: Final = "mistralai/mistral-7b-chat"
ROUTERBENCH_STRONG: Final = "gpt-4-1106-preview"
# MoT's cheap variants in order of preference (the first one a row has is used) and its strong one.
MOT_CHEAP: Final = ("gpt35_cot1", "llama2_13b_pot1")
MOT_STRONG: Final = "gpt4_greedy_cot1"
RESPONSE_SUFFIX: Final = "_response"
ROUTERBENCH_RESPONSE: Final = "|model_response"
ROUTERBENCH_COST: Final = "|total_cost"
# Without a recorded answer (MMLU) the model answered with one option letter.
UNRECORDED_ANSWER_TOKENS: Final = 1
# MoT: a numeric answer is right when it is this close to the gold one (the paper's rule).
NUMERIC_TOLERANCE: Final = 1e-4


@dataclass(frozen=True)
class Prices:
    """USD per 1M input and output tokens of the weak and the strong model."""

    weak_input: Decimal
    weak_output: Decimal
    strong_input: Decimal
    strong_output: Decimal


# RouteLLM's files record no costs: list prices (USD per 1M tokens) of Mixtral 8x7B and GPT-4 Turbo.
ROUTELLM_PRICES: Final = Prices(Decimal("0.60"), Decimal("0.60"), Decimal("10.00"), Decimal("30.00"))

# MoT gives no token counts or prices: list prices (USD per 1M tokens, input and output) of
# the model families when the paper's samples were drawn (2023), by variant-name prefix.
MOT_PRICES: Final[Mapping[str, tuple[Decimal, Decimal]]] = {
    "gpt35": (Decimal("1.5"), Decimal("2")),
    "gpt4": (Decimal("30"), Decimal("60")),
    "llama2_13b": (Decimal("0.25"), Decimal("0.25")),
}


@dataclass(frozen=True)
class Sample:
    """One answer of one model: its text and/or extracted answer, whether it was right, its cost."""

    correct: bool
    text: str | None = None
    answer: str | None = None
    cost: float | None = None

    @property
    def comparable(self) -> str:
        """What agreement compares: the extracted answer when given, else the text."""
        if self.answer is not None:
            return self.answer
        return self.text or ""


@dataclass(frozen=True)
class ModelRun:
    """A model's samples for one prompt; `cost` is USD per call for samples without their own."""

    samples: tuple[Sample, ...]
    cost: float | None = None

    def sample_cost(self, index: int) -> float:
        own = self.samples[index].cost
        return own if own is not None else (self.cost or 0.0)

    def cost_of(self, count: int) -> float:
        """What the first `count` samples cost: one call each (parallel calls; n=k sampling,
        which bills the prompt once, costs less)."""
        return sum(self.sample_cost(i) for i in range(min(count, len(self.samples))))

    @property
    def mean_cost(self) -> float:
        return self.cost_of(len(self.samples)) / len(self.samples) if self.samples else 0.0


@dataclass(frozen=True)
class PromptRecord:
    """One prompt with every model's outcome on it."""

    id: str
    prompt: str
    models: Mapping[str, ModelRun]
    cheap: str
    strong: str
    category: str = ""
    features: Mapping[str, str] = field(default_factory=dict)

    @property
    def cheap_run(self) -> ModelRun:
        return self.models[self.cheap]

    @property
    def strong_run(self) -> ModelRun:
        return self.models[self.strong]

    @property
    def cheap_correct(self) -> bool:
        return self.cheap_run.samples[0].correct

    @property
    def strong_correct(self) -> bool:
        return self.strong_run.samples[0].correct

    @property
    def cheap_text(self) -> str | None:
        return self.cheap_run.samples[0].text


# --- the JSONL format -------------------------------------------------------------------


def record_from_json(data: Mapping[str, Any], *, feature_names: Sequence[str] = ()) -> PromptRecord:
    """A record from one parsed JSONL object; only the `feature_names` asked for are kept."""
    models = {str(name): run_from_json(run) for name, run in dict(data["models"]).items()}
    cheap, strong = str(data["cheap"]), str(data["strong"])
    for role, name in (("cheap", cheap), ("strong", strong)):
        if name not in models or not models[name].samples:
            raise ValueError(f"record {data.get('id')!r}: the {role} model {name!r} has no samples")
    given = dict(data.get("features") or {})
    return PromptRecord(
        id=str(data["id"]),
        prompt=str(data["prompt"]),
        models=models,
        cheap=cheap,
        strong=strong,
        category=str(data.get("category") or ""),
        features={name: str(given[name]) for name in feature_names if name in given},
    )


def run_from_json(data: Mapping[str, Any]) -> ModelRun:
    samples = tuple(
        Sample(
            correct=bool(sample["correct"]),
            text=optional_str(sample.get("text")),
            answer=optional_str(sample.get("answer")),
            cost=optional_float(sample.get("cost")),
        )
        for sample in data["samples"]
    )
    return ModelRun(samples=samples, cost=optional_float(data.get("cost")))


def record_to_json(record: PromptRecord) -> dict[str, Any]:
    """The JSONL object of `record` (fields that are None are left out)."""
    return {
        "id": record.id,
        "prompt": record.prompt,
        **({"category": record.category} if record.category else {}),
        **({"features": dict(record.features)} if record.features else {}),
        "models": {name: run_to_json(run) for name, run in record.models.items()},
        "cheap": record.cheap,
        "strong": record.strong,
    }


def run_to_json(run: ModelRun) -> dict[str, Any]:
    samples = [
        {
            key: value
            for key, value in (("text", s.text), ("answer", s.answer), ("correct", s.correct), ("cost", s.cost))
            if value is not None
        }
        for s in run.samples
    ]
    return {"samples": samples, **({"cost": run.cost} if run.cost is not None else {})}


def read_jsonl(path: Path, *, feature_names: Sequence[str] = ()) -> list[PromptRecord]:
    records = []
    for number, data in enumerate(json_lines(path), start=1):
        try:
            records.append(record_from_json(data, feature_names=feature_names))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from exc
    return records


def write_jsonl(records: Iterable[PromptRecord], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- loading any supported file ----------------------------------------------------------


def load_records(
    path: str | Path,
    *,
    cheap: str | None = None,
    strong: str | None = None,
    prices: Prices | None = None,
    feature_columns: Sequence[str] = (),
) -> list[PromptRecord]:
    """The records of a JSONL file in this format, or of a RouteLLM, RouterBench or MoT file.

    The kind is told from the content. `cheap`/`strong` override each converter's
    defaults; `prices` replace the list prices a RouteLLM file (which has no costs) is
    priced at.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "routellm":
        roles = {"weak": cheap or ROUTELLM_WEAK, "strong": strong or ROUTELLM_STRONG}
        return routellm_records(path, **roles, prices=prices or ROUTELLM_PRICES, feature_columns=feature_columns)
    if kind == "routerbench":
        return routerbench_records(path, cheap=cheap or ROUTERBENCH_CHEAP, strong=strong or ROUTERBENCH_STRONG)
    if kind == "mot":
        return mot_records(path, cheap=cheap, strong=strong or MOT_STRONG)
    records = read_jsonl(path, feature_names=feature_columns)
    if cheap or strong:
        records = [with_roles(record, cheap=cheap, strong=strong) for record in records]
    return records


def with_roles(record: PromptRecord, *, cheap: str | None, strong: str | None) -> PromptRecord:
    return dataclasses.replace(record, cheap=cheap or record.cheap, strong=strong or record.strong)


def file_kind(path: Path) -> str:
    """ "routellm", "routerbench", "mot" or "jsonl" (this module's format)."""
    if path.suffix.lower() == ".csv":
        return "routerbench" if any(name.endswith(ROUTERBENCH_RESPONSE) for name in csv_header(path)) else "routellm"
    first = next(json_lines(path), {})
    return "mot" if "answers" in first and "models" not in first else "jsonl"


def csv_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return next(csv.reader(file), [])


def csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    # RouterBench's response cells run past csv's default 128 kB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or ()), list(reader)


# --- RouteLLM ---------------------------------------------------------------------------


def routellm_records(
    path: Path,
    *,
    weak: str = ROUTELLM_WEAK,
    strong: str = ROUTELLM_STRONG,
    prices: Prices,
    feature_columns: Sequence[str] = (),
) -> list[PromptRecord]:
    """RouteLLM's eval CSV, minus its contaminated prompts when their list sits beside it.

    Only `feature_columns` become features; every other column is ignored, whatever it
    holds (a correctness column coded 0.0/1.0 must never be a feature).
    """
    columns, rows = csv_rows(path)
    missing = {"prompt", weak, strong, *feature_columns} - set(columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    dropped = contaminated_prompts(path)
    records = []
    for number, row in enumerate(rows):
        if row["prompt"] in dropped:
            continue
        prompt_tokens = prompt_tokens_of(row["prompt"])
        models = {
            weak: routellm_run(row, weak, prompt_tokens, prices.weak_input, prices.weak_output),
            strong: routellm_run(row, strong, prompt_tokens, prices.strong_input, prices.strong_output),
        }
        features = {name: row[name] for name in feature_columns}
        records.append(PromptRecord(str(number), row["prompt"], models, weak, strong, "", features))
    return records


def routellm_run(
    row: Mapping[str, str], model: str, prompt_tokens: int, input_price: Decimal, output_price: Decimal
) -> ModelRun:
    text = row.get(model + RESPONSE_SUFFIX)
    answer_tokens = estimate_tokens(text) if text is not None else UNRECORDED_ANSWER_TOKENS
    cost = call_cost(prompt_tokens, answer_tokens, input_price, output_price)
    return ModelRun(samples=(Sample(correct=truthy(row[model]), text=text),), cost=cost)


def truthy(value: str) -> bool:
    cleaned = value.strip().lower()
    if cleaned in {"true", "yes"}:
        return True
    try:
        return float(cleaned) >= 0.5
    except ValueError:
        return False


def contaminated_prompts(path: Path) -> set[str]:
    """RouteLLM's `eval_prompt`s to drop: `<name>_contaminated_prompts.jsonl` or the plain name."""
    stem = path.name.removesuffix(".csv").removesuffix("_responses")
    prompts: set[str] = set()
    for name in (f"{stem}_contaminated_prompts.jsonl", "contaminated_prompts.jsonl"):
        candidate = path.with_name(name)
        if candidate.exists():
            prompts.update(str(line["eval_prompt"]) for line in json_lines(candidate))
    return prompts


# --- RouterBench ------------------------------------------------------------------------


def routerbench_records(
    path: Path, *, cheap: str = ROUTERBENCH_CHEAP, strong: str = ROUTERBENCH_STRONG
) -> list[PromptRecord]:
    """Every model's response, 0/1 score and cost; duplicated ids kept once.

    A model with no score on a row is left out of that row; a row missing the cheap or
    the strong model's score is dropped.
    """
    columns, rows = csv_rows(path)
    models = [name.removesuffix(ROUTERBENCH_RESPONSE) for name in columns if name.endswith(ROUTERBENCH_RESPONSE)]
    missing = {cheap, strong} - set(models)
    if missing:
        raise ValueError(f"{path}: no responses of {', '.join(sorted(missing))}")
    records: list[PromptRecord] = []
    seen: set[str] = set()
    for number, row in enumerate(rows):
        identifier = row.get("sample_id") or str(number)
        runs = {model: run for model in models if (run := routerbench_run(row, model)) is not None}
        if identifier in seen or cheap not in runs or strong not in runs:
            continue
        seen.add(identifier)
        records.append(
            PromptRecord(identifier, python_list_text(row["prompt"]), runs, cheap, strong, row.get("eval_name", ""))
        )
    return records


def routerbench_run(row: Mapping[str, str], model: str) -> ModelRun | None:
    score = optional_float(row.get(model))
    if score is None:
        return None
    text = python_list_text(row.get(model + ROUTERBENCH_RESPONSE, ""))
    cost = optional_float(row.get(model + ROUTERBENCH_COST))
    return ModelRun(samples=(Sample(correct=score >= 0.5, text=text, cost=cost),))


def python_list_text(cell: str) -> str:
    """RouterBench stores texts as Python list literals (`"['C\\n']"`): their strings, joined."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return cell
    if isinstance(value, list | tuple):
        return "\n\n".join(str(item) for item in value)
    return str(value)


# --- MoT --------------------------------------------------------------------------------


def mot_records(path: Path, *, cheap: str | None = None, strong: str = MOT_STRONG) -> list[PromptRecord]:
    """The cheap variant's samples and the strong variant's answers per question.

    Without `cheap`, the first of `MOT_CHEAP` the question has samples of. Questions
    without cheap or strong samples are dropped.
    """
    records = []
    for data in json_lines(path):
        answers: Mapping[str, Sequence[Any]] = data.get("answers") or {}
        chosen = cheap or next((name for name in MOT_CHEAP if answers.get(name)), None)
        if chosen is None or not answers.get(chosen) or not answers.get(strong):
            continue
        models = {name: mot_run(data, name) for name in (chosen, strong)}
        records.append(PromptRecord(str(data["id"]), str(data["question"]), models, chosen, strong))
    return records


def mot_run(data: Mapping[str, Any], variant: str) -> ModelRun:
    gold = str(data["gold"])
    texts: Mapping[str, str] = data.get("first_text") or {}
    lengths: Sequence[int] = (data.get("gen_chars") or {}).get(variant) or []
    input_price, output_price = mot_prices(variant)
    prompt_tokens = prompt_tokens_of(str(data["question"]))
    samples = []
    question = str(data["question"])
    for index, raw in enumerate(data["answers"][variant]):
        # Where the authors' parser failed the "answer" is the model's whole text
        # ("Tomorrow is 11/12/2019, so 24 hours later is 11/13/2019."): judge what it states.
        written = None if raw is None else str(raw)
        answer = extract_answer(written, prompt=question) if written is not None else None
        chars = lengths[index] if index < len(lengths) else len(texts.get(variant, ""))
        cost = call_cost(prompt_tokens, max(1, chars // CHARS_PER_TOKEN), input_price, output_price)
        text = texts.get(variant) if index == 0 else (written if written != answer else None)
        samples.append(Sample(correct=matches_gold(answer, gold), text=text, answer=answer, cost=cost))
    return ModelRun(samples=tuple(samples))


def mot_prices(variant: str) -> tuple[Decimal, Decimal]:
    for prefix, prices in MOT_PRICES.items():
        if variant.startswith(prefix):
            return prices
    raise ValueError(f"no prices known for the MoT variant {variant!r}")


def matches_gold(answer: str | None, gold: str) -> bool:
    """Numbers within `NUMERIC_TOLERANCE` of each other, anything else equal as written."""
    if answer is None:
        return False
    left, right = canonical_number(answer.strip()), canonical_number(gold.strip())
    if left is not None and right is not None:
        return abs(Decimal(left) - Decimal(right)) < Decimal(str(NUMERIC_TOLERANCE))
    return answer.strip() == gold.strip()


# --- costs ------------------------------------------------------------------------------


def prompt_tokens_of(prompt: str) -> int:
    """The prompt as one user message (`tokens.estimate_prompt_tokens`)."""
    return estimate_tokens(prompt) + TOKENS_PER_MESSAGE


def call_cost(prompt_tokens: int, answer_tokens: int, input_price: Decimal, output_price: Decimal) -> float:
    """USD of one call at per-1M-token prices."""
    return float((prompt_tokens * input_price + answer_tokens * output_price) / Decimal(1_000_000))
