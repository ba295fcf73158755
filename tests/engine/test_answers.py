"""Final-answer extraction: numbers, option letters, dates, yes/no, short spans, and picking the kind."""

from __future__ import annotations

import pytest

from routing.engine.answers import answer_kind, canonical_number, extract_answer, prompt_options

MCQ = "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium\nAnswer:"
DATE_PROMPT = "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?"
WORD_PROBLEM = "Sam has 40 stamps and gets 2 more. How many stamps does he have in total?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 9 eggs left.\n#### 18", "18"),
        ("The answer is $1,234.50.", "1234.5"),
        ("So the result is \\boxed{\\frac{3}{4}}.", "0.75"),
        ("\\boxed{42} is what we get; earlier we had 7.", "42"),
        ("It takes 1 1/2 hours.", "1.5"),
        ("Half of it: 3/4 of a cup.", "0.75"),
        ("The answer is 18 apples (9 * 2).", "18"),
        ("Final answer: 50%", "50"),
        ("18.0", "18"),
        ("-0.50", "-0.5"),
        ("A third is 0.33333333", "0.333333"),
        ("It cost $5, then $7, so 12 dollars in all", "12"),
        ("No number here at all.", None),
    ],
)
def test_it_extracts_the_final_number(text: str, expected: str | None) -> None:
    assert extract_answer(text, "number") == expected


def test_an_early_answer_marker_does_not_hide_the_result_at_the_end() -> None:
    text = (
        "Answer: Janet uses 3 eggs for breakfast and 4 for muffins.\nShe has 16 - 7 = 9 left.\n"
        "She sells them at $2 each.\nShe makes 9 * 2 = $18 a day."
    )

    assert extract_answer(text, "number") == "18"


def test_a_number_too_large_for_a_float_stays_a_finite_comparable_string() -> None:
    huge = "1" * 400

    assert extract_answer(huge, "number") == huge
    assert extract_answer(f"The answer is {huge}.", "number") == extract_answer(huge, "number")
    assert canonical_number("9" * 500) is None  # past the cap: not an answer worth comparing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("C\n", "C"),
        ("(B) carbon dioxide", "B"),
        ("Answer: B", "B"),
        ("The correct answer is (B).", "B"),
        ("I'd say the answer is B because plants breathe it in.", "B"),
        ("B is correct: plants take in carbon dioxide.", "B"),
        ("Plants absorb carbon dioxide.", "B"),  # the option's text, quoted
        ("A plant absorbs many things.", None),  # "A" the article is no choice
        ("Okay,", None),
        ("The answer is E.", None),  # not one of this prompt's options
    ],
)
def test_it_extracts_the_chosen_option(text: str, expected: str | None) -> None:
    assert extract_answer(text, "option", prompt=MCQ) == expected


def test_the_options_are_the_last_block_of_a_few_shot_prompt() -> None:
    few_shot = f"Q1\nA) x\nB) y\nAnswer:\nB\n\n{MCQ}"

    assert prompt_options(few_shot) == {"A": "oxygen", "B": "carbon dioxide", "C": "nitrogen", "D": "helium"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Explain: today is one day later.\nA: 05/01/2021", "05/01/2021"),
        ("Today is 5/1/2021.", "05/01/2021"),
        ("That is 2021-05-01.", "05/01/2021"),
        ("So today is May 1, 2021.", "05/01/2021"),
        ("So today is the 1st of May 2021.", "05/01/2021"),
        ("It was 25/12/2020, Christmas.", "12/25/2020"),
        ("Yesterday was April 30, 2021, so the answer is 05/01/2021, not 04/30/2021... wait", "05/01/2021"),
        ("I cannot tell.", None),
    ],
)
def test_it_normalises_dates_to_mm_dd_yyyy(text: str, expected: str | None) -> None:
    assert extract_answer(text, "date") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Yes, it is.", "yes"), ("No.", "no"), ("Let me think.\nThe answer is: no", "no"), ("Perhaps.", None)],
)
def test_it_extracts_yes_or_no(text: str, expected: str | None) -> None:
    assert extract_answer(text, "yesno") == expected


def test_a_short_span_is_normalised_and_a_long_one_is_free_text() -> None:
    assert extract_answer("Answer: The Eiffel Tower.", "span") == "eiffel tower"
    assert extract_answer("the eiffel tower", "span") == "eiffel tower"
    assert extract_answer("It is a long story that starts in Paris and ends somewhere else entirely.", "span") is None


@pytest.mark.parametrize(
    ("prompt", "text", "kind"),
    [
        (MCQ, "B", "option"),
        (DATE_PROMPT, "05/01/2021", "date"),
        (WORD_PROBLEM, "He has 42.", "number"),
        ("Is Paris the capital of France?", "Yes.", "yesno"),
        ("Write a function to reverse a list.", "```python\ndef f(x): return x[::-1]\n```", None),
        ("What is the capital of France?", "Answer: Paris.", "span"),
        ("Tell me about your return policy.", "We take returns within 30 days, " * 5, None),
        (None, "#### 18", "number"),
        (None, "```python\nprint(1)\n```", None),
    ],
)
def test_auto_picks_the_kind_from_the_prompt_then_the_answer(prompt: str | None, text: str, kind: str | None) -> None:
    assert answer_kind(prompt, text) == kind


def test_auto_extraction_uses_the_prompt() -> None:
    assert extract_answer("B) carbon dioxide", prompt=MCQ) == "B"
    assert extract_answer("Today is May 1, 2021.", prompt=DATE_PROMPT) == "05/01/2021"
    assert extract_answer("He has 40 + 2 = 42 stamps.", prompt=WORD_PROBLEM) == "42"
    assert extract_answer("def f():\n    return 1", prompt="Write a function that returns one.") is None


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown answer kind"):
        extract_answer("42", "colour")


def test_a_hostile_answer_is_read_quickly() -> None:
    import time

    hostile = "(" * 20_000 + "1" * 5_000 + "answer is " * 2_000 + "/" * 10_000

    started = time.perf_counter()
    for kind in ("number", "option", "date", "yesno", "span", "auto"):
        extract_answer(hostile, kind, prompt=MCQ)

    assert time.perf_counter() - started < 2.0
