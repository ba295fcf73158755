"""Agreement between k answers: vote share, the answer to return, embeddings for free text and code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from routing.engine.agreement import agreement, comparable_text, lexical_embed, vote

MCQ = "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium\nAnswer:"
WORD_PROBLEM = "Sam has 40 stamps and gets 2 more. How many stamps does he have in total?"
CODE_PROMPT = "Write a function to reverse a list."


def test_the_score_is_the_majority_vote_share() -> None:
    found = agreement(["He has 42.", "40 + 2 = 42", "#### 42", "He has 44.", "I am not sure."], prompt=WORD_PROBLEM)

    assert found.method == "vote"
    assert found.score == pytest.approx(3 / 5)  # an answer that states nothing counts against the majority
    assert found.majority == "42"
    assert dict(found.votes) == {"42": 3, "44": 1}
    assert found.answers == ("42", "42", "42", "44", None)


def test_the_preferred_answer_is_returned_when_it_is_in_the_majority() -> None:
    found = agreement(["B", "(B)", "C", "Answer: B"], prompt=MCQ)

    assert (found.representative, found.preferred_agreed) == (0, True)


def test_a_preferred_answer_outvoted_is_replaced_by_the_first_majority_answer() -> None:
    found = agreement(["C", "B", "Answer: B", "(B) carbon dioxide"], prompt=MCQ)

    assert found.representative == 1
    assert found.preferred_agreed is False
    assert found.as_dict()["preferred_agreed"] is False


def test_ties_go_to_the_preferred_answer() -> None:
    assert vote(["B", "C", "C", "B"], preferred=3).representative == 3
    assert vote(["B", "C", None, None]).majority == "B"


def test_one_answer_is_nothing_to_compare() -> None:
    found = agreement(["#### 42"], prompt=WORD_PROBLEM)

    assert (found.method, found.score, found.representative) == ("single", 1.0, 0)


def test_pre_extracted_answers_vote_like_texts() -> None:
    found = agreement(["05/01/2021", "05/01/2021", "Today is May 1, 2021.", "04/30/2021"], prompt="Date in MM/DD/YYYY?")

    assert found.score == pytest.approx(0.75)


def fake_embed(texts: Sequence[str]) -> np.ndarray[Any, Any]:
    """Two directions: texts mentioning "reverse" and the rest."""
    return np.asarray([[1.0, 0.0] if "reverse" in text or "[::-1]" in text else [0.0, 1.0] for text in texts])


def test_free_text_is_compared_by_embeddings() -> None:
    answers = [
        "Use slicing to reverse it.",
        "To reverse it, slice it: that is the quickest way.",
        "Add the numbers one by one.",
    ]

    found = agreement(answers, prompt=CODE_PROMPT, embed=fake_embed)

    assert found.method == "embedding"
    assert found.score == pytest.approx(1 / 2)  # the answer returned is like one of the two others
    assert (found.representative, found.preferred_agreed) == (0, True)


def test_python_answers_are_compared_by_embeddings_and_by_their_code() -> None:
    answers = [
        "```python\ndef rev(xs):\n    return xs[::-1]\n```",
        "Here you go:\n```python\ndef rev(xs):\n    # slicing\n    return xs[::-1]\n```",
        "```js\nfunction sum(a) { return a.reduce((x, y) => x + y) }\n```",
    ]

    found = agreement(answers, prompt=CODE_PROMPT, embed=fake_embed)

    # The Python pair is alike in both measures; JavaScript is like neither (it does not parse).
    assert found.method == "embedding"
    assert found.score == pytest.approx(1 / 2)
    assert (found.representative, found.preferred_agreed) == (0, True)


def test_programs_that_read_alike_agree_more_than_programs_that_only_share_words() -> None:
    same_algorithm = [
        "```python\ndef rev(xs):\n    return xs[::-1]\n```",
        '```python\ndef reverse_list(items):\n    """Reverse."""\n    return items[::-1]\n```',
    ]
    other_algorithm = [
        "```python\ndef rev(xs):\n    return xs[::-1]\n```",
        "```python\ndef rev(xs):\n    out = []\n    for x in xs:\n        out.insert(0, x)\n    return out\n```",
    ]

    alike = agreement(same_algorithm, prompt=CODE_PROMPT, embed=lambda texts: None)
    unlike = agreement(other_algorithm, prompt=CODE_PROMPT, embed=lambda texts: None)

    assert alike.method == unlike.method == "embedding"  # no embedding model: the code alone is compared
    assert alike.score > 0.7 > unlike.score


def test_an_outlying_preferred_answer_gives_way_to_the_most_central_one() -> None:
    answers = ["print('hello')", "def reverse(xs): return xs[::-1]", "xs.reverse()", "reverse it: xs[::-1]"]

    found = agreement(answers, prompt=CODE_PROMPT, embed=fake_embed)

    assert found.preferred_agreed is False
    assert found.representative in (1, 2, 3)


def test_the_score_is_how_much_the_others_back_the_answer_returned() -> None:
    answers = ["print('hello')", "def reverse(xs): return xs[::-1]", "xs.reverse()", "reverse it: xs[::-1]"]

    found = agreement(answers, prompt=CODE_PROMPT, embed=fake_embed)
    unanimous = agreement(answers[1:], prompt=CODE_PROMPT, embed=fake_embed)

    # Answer 1 is like two of the three others: its mean similarity, not the mean over all pairs (1/2).
    assert found.representative == 1
    assert found.score == pytest.approx(2 / 3)
    assert unanimous.score == pytest.approx(1.0)


def test_without_an_embedder_unextractable_answers_score_zero() -> None:
    found = agreement(["Some prose.", "Other prose."], prompt=CODE_PROMPT)

    assert (found.method, found.score) == ("none", 0.0)


def test_an_embedder_that_is_unavailable_falls_back_to_votes() -> None:
    found = agreement(["42", "I can't say", "no idea"], prompt=WORD_PROBLEM, embed=lambda texts: None)

    assert found.method == "vote"
    assert found.score == pytest.approx(1 / 3)


def test_code_is_compared_by_its_blocks() -> None:
    assert comparable_text("Sure! Here it is:\n```python\nx = 1\n```\nHope it helps.") == "x = 1"
    assert comparable_text("plain words") == "plain words"


def test_the_lexical_embedder_finds_the_same_code_similar() -> None:
    vectors = lexical_embed(["def f(xs): return xs[::-1]", "def f(xs): return xs[::-1]", "SELECT * FROM users"])

    assert vectors[0] @ vectors[1] == pytest.approx(1.0)
    assert vectors[0] @ vectors[2] < 0.2


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        agreement([])
    with pytest.raises(ValueError, match="out of range"):
        agreement(["a", "b"], preferred=2)
