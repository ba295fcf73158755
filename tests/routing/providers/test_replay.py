"""ReplayProvider: recorded GSM8K answers of Mixtral and GPT-4, with their correctness."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from routing.engine.errors import ProviderMisconfigured
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ProviderType
from routing.providers.local import ReplayProvider, replay_prompts

# Mixtral got this one wrong (24), GPT-4 right (18).
BILL = (
    "Bill starts on the 3rd floor. He rides the elevator up to the floor that's equal to 4 times "
    "his starting floor plus 6. What floor is Bill on now?"
)
BILL_MIXTRAL = " Bill is on 4 * 3 + 6 = <<4*3+6=18+6=24>>24th floor now.\n#### 24"
BILL_GPT4 = (
    "Bill starts on the 3rd floor. To find the floor he ends up on, we calculate 4 times his starting "
    "floor plus 6:\n\n4 times the 3rd floor = 4 * 3 = 12\nThen add 6: 12 + 6 = 18\n\nBill is now on the 18th floor."
)
# Recorded with a typographic apostrophe: "Sarah’s books".
SARAH_STRAIGHT = (
    "Sarah has 9 books and Joseph had twice the number of Sarah's books, but he lost 2 of them. "
    "How many books does Joseph currently have?"
)


def make_endpoint(model_id: str = "mixtral", **options: Any) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=3,
        name=f"replay-{model_id}",
        provider_kind=ProviderType.REPLAY,
        model_id=model_id,
        input_price_per_m=Decimal("0.60"),
        output_price_per_m=Decimal("0.60"),
        options=options,
    )


def chat_for(prompt: str) -> ChatRequest:
    return ChatRequest(messages=(Message("system", "Solve the problem."), Message("user", prompt)))


async def ask(endpoint: EndpointSnapshot, prompt: str, *, max_tokens: int = 1024) -> Completion:
    provider = ReplayProvider(endpoint)
    try:
        return await provider.complete(chat_for(prompt), max_tokens=max_tokens)
    finally:
        await provider.aclose()


async def test_mixtral_answers_with_its_recorded_answer_and_its_wrongness() -> None:
    completion = await ask(make_endpoint("mixtral"), BILL)

    assert completion.text == BILL_MIXTRAL
    assert completion.quality_label == 0.0
    assert completion.finish_reason == "stop"
    assert completion.model == "mistralai/Mixtral-8x7B-Instruct-v0.1"


async def test_gpt4_answers_with_its_recorded_answer_and_its_correctness() -> None:
    completion = await ask(make_endpoint("gpt-4"), BILL)

    assert completion.text == BILL_GPT4
    assert completion.quality_label == 1.0
    assert completion.model == "gpt-4-1106-preview"


async def test_the_full_model_names_select_the_same_recordings() -> None:
    mixtral = await ask(make_endpoint("mistralai/Mixtral-8x7B-Instruct-v0.1"), BILL)
    gpt4 = await ask(make_endpoint("gpt-4-1106-preview"), BILL)

    assert (mixtral.text, gpt4.text) == (BILL_MIXTRAL, BILL_GPT4)


async def test_tokens_are_estimated_from_the_conversation_and_the_answer() -> None:
    completion = await ask(make_endpoint("gpt-4"), BILL)

    assert completion.input_tokens == estimate_prompt_tokens(chat_for(BILL))
    assert completion.output_tokens == estimate_tokens(BILL_GPT4)


async def test_a_straight_quote_and_stray_whitespace_still_match_a_curly_quote_prompt() -> None:
    completion = await ask(make_endpoint("mixtral"), "  " + SARAH_STRAIGHT.replace(" books", "\n books", 1) + "\n")

    assert completion.text.startswith(" Joseph initially had 9 x 2")
    assert completion.quality_label == 1.0


async def test_an_unknown_prompt_gets_a_labelled_simulated_answer_without_a_quality_label() -> None:
    completion = await ask(make_endpoint("mixtral"), "What is the capital of France?")

    assert completion.text.startswith(
        "[simulated answer from replay model 'mixtral': this prompt is not in the recorded data set]"
    )
    assert "What is the capital of France?" in completion.text
    assert completion.quality_label is None
    assert completion.finish_reason == "stop"
    assert completion.text == (await ask(make_endpoint("mixtral"), "What is the capital of France?")).text


async def test_an_answer_longer_than_max_tokens_is_cut_and_loses_its_label() -> None:
    completion = await ask(make_endpoint("gpt-4"), BILL, max_tokens=5)

    assert completion.text == BILL_GPT4[:20]
    assert completion.output_tokens == 5
    assert completion.finish_reason == "length"
    assert completion.quality_label is None


async def test_the_configured_latency_is_awaited_without_blocking_the_loop() -> None:
    endpoint = make_endpoint("mixtral", latency_ms=150)
    await ask(endpoint, BILL)  # load the data set first: only the latency is timed below

    started = time.perf_counter()
    first, second = await asyncio.gather(ask(endpoint, BILL), ask(endpoint, BILL))
    elapsed = time.perf_counter() - started

    assert 0.15 <= elapsed < 0.28
    assert first.latency_ms >= 150
    assert second.latency_ms >= 150


async def test_an_unknown_model_id_is_misconfigured() -> None:
    with pytest.raises(ProviderMisconfigured, match="'claude-3'"):
        await ask(make_endpoint("claude-3"), BILL)


async def test_a_missing_data_set_is_misconfigured(tmp_path: Path) -> None:
    with pytest.raises(ProviderMisconfigured, match=r"no-such\.csv"):
        await ask(make_endpoint("mixtral", dataset=str(tmp_path / "no-such.csv")), BILL)


async def test_another_data_set_of_the_same_format_can_be_named(tmp_path: Path) -> None:
    dataset = tmp_path / "tiny.csv"
    dataset.write_text('prompt,tiny-model,tiny-model_response\n"What is 2 + 2?",True,"4"\n', encoding="utf-8")

    completion = await ask(make_endpoint("tiny-model", dataset=str(dataset)), "What is 2 + 2?")

    assert (completion.text, completion.quality_label) == ("4", 1.0)


def test_replay_prompts_lists_the_recorded_prompts_in_file_order() -> None:
    prompts = replay_prompts()

    assert len(prompts) == 815
    assert prompts[0].startswith("Janet’s ducks lay 16 eggs per day.")
    assert replay_prompts(limit=2) == prompts[:2]


async def test_a_request_that_requires_a_tool_gets_a_call_to_it() -> None:
    tool = MappingProxyType({"type": "function", "function": {"name": "lookup"}})
    chat = ChatRequest(messages=(Message("user", "Find it"),), tools=(tool,), tool_choice="required")

    completion = await ReplayProvider(make_endpoint("gpt-4")).complete(chat, max_tokens=100)

    assert [(c.name, c.arguments) for c in completion.tool_calls] == [("lookup", "{}")]
    assert completion.finish_reason == "tool_calls" and completion.text == ""
