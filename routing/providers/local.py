"""The embedded default provider: answers from recorded real model outputs, no network.

`ReplayProvider` looks the last user message up in a CSV of prompts and the answers two
real models gave them, with whether each answer was right. The bundled file is the
development split of RouteLLM's GSM8K evaluation data (lm-sys/RouteLLM, Apache-2.0; see
NOTICE): 815 grade-school maths problems answered by Mixtral-8x7B-Instruct and
GPT-4-1106-preview. It lets the cascade, the scorers and the dashboard run on a laptop
with realistic answers and a known-true quality label for every one of them.

The CSV format is RouteLLM's: a `prompt` column, and per model a correctness column
named after the model (`True`/`False`) and a `<model>_response` column with its answer.
`endpoint.model_id` picks the model ("mixtral" and "gpt-4" are short for the two bundled
ones); `endpoint.options["dataset"]` may name another CSV of the same format, and
`endpoint.options["latency_ms"]` adds a simulated model latency. Streamed, the answer
comes in word-sized deltas spread evenly over that latency.

The data holds no tool calls: a request with tools gets the recorded text, unless its
`tool_choice` requires a call (see `required_tool_call`). Embeddings are stand-in vectors
drawn from a hash of the text (`hashed_vector`), for the demo and tests, not meanings.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from routing.engine.errors import ProviderMisconfigured
from routing.engine.streaming import StreamDone, StreamEvent, answer_events
from routing.engine.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, Embeddings, EndpointSnapshot, ToolCall

DEFAULT_DATASET = Path(__file__).resolve().parent / "data" / "gsm8k_responses.csv"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"
MODEL_ALIASES = {"mixtral": MIXTRAL, MIXTRAL.lower(): MIXTRAL, "gpt-4": GPT4, GPT4: GPT4}
RESPONSE_SUFFIX = "_response"
# The recorded prompts use typographic quotes ("Janet’s ducks"); people type straight ones.
QUOTES = str.maketrans("‘’‚‛“”„‟", "''''\"\"\"\"")
ECHO_CHARS = 120
# The size of a replay endpoint's stand-in embeddings when the request names none.
REPLAY_DIMENSIONS = 16


@dataclass(frozen=True, slots=True)
class RecordedAnswer:
    text: str
    correct: bool


@dataclass(frozen=True, slots=True)
class ReplayData:
    """One recorded data set: prompts in file order and every model's answer to each."""

    prompts: tuple[str, ...]
    models: frozenset[str]
    answers: Mapping[str, Mapping[str, RecordedAnswer]]  # normalised prompt → model → answer

    def answer(self, model: str, prompt: str) -> RecordedAnswer | None:
        return self.answers.get(normalise_prompt(prompt), {}).get(model)


class ReplayProvider:
    """Answers with what a real model answered to the same prompt, from a recorded data set."""

    def __init__(self, endpoint: EndpointSnapshot) -> None:
        self.endpoint = endpoint
        self._data: ReplayData | None = None

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        """The recorded answer, or a labelled simulated one for a prompt not in the data."""
        started = time.perf_counter()
        data = await self._load()
        model = model_column(self.endpoint, data)
        await simulate_latency(self.endpoint)
        return self._answer(data, model, chat, max_tokens, started)

    async def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
        """The same answer in word-sized deltas, spread evenly over the simulated latency."""
        started = time.perf_counter()
        data = await self._load()
        completion = self._answer(data, model_column(self.endpoint, data), chat, max_tokens, started)
        pieces = list(answer_events(completion))
        gap_s = latency_s(self.endpoint) / max(len(pieces), 1)
        for piece in pieces:
            if gap_s > 0:
                await asyncio.sleep(gap_s)
            yield piece
        yield StreamDone(dataclasses.replace(completion, latency_ms=(time.perf_counter() - started) * 1000))

    def _answer(self, data: ReplayData, model: str, chat: ChatRequest, max_tokens: int, started: float) -> Completion:
        recorded = data.answer(model, chat.prompt)
        if recorded is None:
            text, label = simulated_answer(self.endpoint.model_id, chat.prompt), None
        else:
            text, label = recorded.text, float(recorded.correct)
        text, finish_reason = cap_tokens(text, max_tokens)
        calls = required_tool_call(chat)
        if calls:
            text, finish_reason, label = "", "tool_calls", None
        return Completion(
            text=text,
            finish_reason=finish_reason,
            input_tokens=estimate_prompt_tokens(chat),
            output_tokens=estimate_tokens(text) + sum(estimate_tokens(c.arguments) for c in calls),
            latency_ms=(time.perf_counter() - started) * 1000,
            # A cut-short answer may have lost its result: its recorded grade no longer holds.
            quality_label=label if finish_reason == "stop" else None,
            model=model,
            tool_calls=calls,
        )

    async def embed(self, inputs: Sequence[str], *, dimensions: int | None) -> Embeddings:
        """Stand-in vectors, the same for the same text: a hash, not a meaning (for the demo and tests)."""
        size = dimensions or REPLAY_DIMENSIONS
        await simulate_latency(self.endpoint)
        return Embeddings(
            vectors=tuple(hashed_vector(text, size) for text in inputs),
            input_tokens=sum(estimate_tokens(text) for text in inputs),
            latency_ms=latency_s(self.endpoint) * 1000,
            model=self.endpoint.model_id,
        )

    async def aclose(self) -> None:
        return None

    async def _load(self) -> ReplayData:
        if self._data is None:
            # Reading and indexing the file takes a few milliseconds: not on the event loop.
            self._data = await asyncio.to_thread(load_replay_data, dataset_path(self.endpoint))
        return self._data


def required_tool_call(chat: ChatRequest) -> tuple[ToolCall, ...]:
    """A recorded data set holds no tool calls: the replay answers tool requests with its text,
    unless `tool_choice` requires a call; then it calls the tool named (the first, for
    "required") with an empty object of arguments."""
    choice = chat.tool_choice
    if not chat.tools or not (choice == "required" or isinstance(choice, Mapping)):
        return ()
    name = choice["function"]["name"] if isinstance(choice, Mapping) else chat.tools[0]["function"]["name"]
    return (ToolCall(id="call_replay_0", name=str(name), arguments="{}"),)


def hashed_vector(text: str, size: int) -> tuple[float, ...]:
    """A unit vector of `size` numbers drawn from the text's hash."""
    digest = b""
    while len(digest) < size:
        digest += hashlib.blake2b(text.encode() + len(digest).to_bytes(4, "big")).digest()
    raw = [byte / 127.5 - 1.0 for byte in digest[:size]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return tuple(x / norm for x in raw)


def replay_prompts(limit: int | None = None, *, dataset: str | Path | None = None) -> list[str]:
    """The data set's prompts in file order, as recorded (the first `limit` of them)."""
    data = load_replay_data(str(dataset or DEFAULT_DATASET))
    return list(data.prompts[:limit])


def normalise_prompt(prompt: str) -> str:
    """The lookup key: straight quotes, single spaces, no surrounding whitespace."""
    return " ".join(prompt.translate(QUOTES).split())


def dataset_path(endpoint: EndpointSnapshot) -> str:
    return str(endpoint.options.get("dataset") or DEFAULT_DATASET)


def model_column(endpoint: EndpointSnapshot, data: ReplayData) -> str:
    """The data set's name for the endpoint's model."""
    model_id = endpoint.model_id.strip()
    column = MODEL_ALIASES.get(model_id.lower(), model_id)
    if column not in data.models:
        known = ", ".join(sorted(data.models))
        raise ProviderMisconfigured(f"{endpoint.name}: no recorded answers for model {model_id!r} (known: {known})")
    return column


async def simulate_latency(endpoint: EndpointSnapshot) -> None:
    if (seconds := latency_s(endpoint)) > 0:
        await asyncio.sleep(seconds)


def latency_s(endpoint: EndpointSnapshot) -> float:
    return float(endpoint.options.get("latency_ms", 0)) / 1000


def simulated_answer(model_id: str, prompt: str) -> str:
    """A deterministic stand-in that nobody can mistake for a model's answer."""
    echo = normalise_prompt(prompt)
    if len(echo) > ECHO_CHARS:
        echo = echo[: ECHO_CHARS - 1] + "…"
    label = f"[simulated answer from replay model {model_id!r}: this prompt is not in the recorded data set]"
    return f"{label} You asked: {echo}"


def cap_tokens(text: str, max_tokens: int) -> tuple[str, str]:
    """The text cut to `max_tokens` (as `estimate_tokens` counts) and its finish reason."""
    limit = max(max_tokens, 0) * CHARS_PER_TOKEN
    return (text, "stop") if len(text) <= limit else (text[:limit], "length")


@functools.lru_cache(maxsize=8)
def load_replay_data(path: str) -> ReplayData:
    """Read and index a RouteLLM-format CSV once per process."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProviderMisconfigured(f"cannot read replay data set {path}: {exc}") from exc
    columns = set(rows[0]) if rows else set()
    models = frozenset(c for c in columns if c + RESPONSE_SUFFIX in columns)
    if "prompt" not in columns or not models:
        raise ProviderMisconfigured(f"{path}: not a replay data set (needs prompt, <model>, <model>_response)")
    return ReplayData(
        prompts=tuple(row["prompt"] for row in rows),
        models=models,
        answers=index_answers(rows, models),
    )


def index_answers(rows: list[dict[str, str]], models: frozenset[str]) -> dict[str, dict[str, RecordedAnswer]]:
    answers: dict[str, dict[str, RecordedAnswer]] = {}
    for row in rows:
        # setdefault: should a prompt repeat, its first recording wins.
        answers.setdefault(
            normalise_prompt(row["prompt"]),
            {m: RecordedAnswer(row[m + RESPONSE_SUFFIX], row[m].strip().lower() == "true") for m in models},
        )
    return answers
