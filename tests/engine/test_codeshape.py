"""Programs compared by their syntax trees and tokens, never run."""

from __future__ import annotations

import pytest

from routing.engine.codeshape import shape_of, similarity, similarity_matrix

REVERSE = "```python\ndef rev(xs):\n    return xs[::-1]\n```"


def test_prose_and_other_languages_hold_no_python() -> None:
    assert shape_of("Paris") is None  # parses as an expression, but defines nothing
    assert shape_of("The answer is to reverse the list.") is None
    assert shape_of("```js\nfunction rev(a) { return a.reverse() }\n```") is None


def test_code_is_found_in_fenced_or_tagged_blocks_or_as_the_whole_answer() -> None:
    tagged = " \n[PYTHON]\ndef rev(xs):\n    return xs[::-1]\n[/PYTHON]\n[TESTS]\nassert rev([1]) == [1]\n[/TESTS]"
    bare = "def rev(xs):\n    return xs[::-1]"

    shapes = [shape_of(text) for text in (REVERSE, tagged, bare)]

    assert all(shape is not None for shape in shapes)
    assert shapes[0] == shapes[1] == shapes[2]


def test_comments_docstrings_prose_and_usage_examples_do_not_count() -> None:
    chatty = (
        'Sure! Here is a function:\n```python\ndef rev(xs):\n    """Reverse a list."""\n'
        "    # slicing with a negative step\n    return xs[::-1]\n\nprint(rev([1, 2, 3]))\n```\nHope it helps."
    )

    first, second = shape_of(REVERSE), shape_of(chatty)

    assert first is not None and second is not None
    assert similarity(first, second) == pytest.approx(1.0)


def test_renamed_code_reads_closer_than_another_algorithm() -> None:
    renamed = shape_of("```python\ndef reverse_items(items):\n    return items[::-1]\n```")
    looped = shape_of(
        "```python\ndef rev(xs):\n    out = []\n    for x in xs:\n        out.insert(0, x)\n    return out\n```"
    )
    original = shape_of(REVERSE)
    assert original is not None and renamed is not None and looped is not None

    assert similarity(original, renamed) > similarity(original, looped)
    assert 0.0 <= similarity(original, looped) < 1.0


def test_a_matrix_needs_two_answers_in_python_and_others_count_as_unlike() -> None:
    javascript = "```js\nfunction rev(a) { return a.reverse() }\n```"

    matrix = similarity_matrix([REVERSE, REVERSE, javascript])

    assert similarity_matrix([REVERSE, javascript, "no code"]) is None
    assert matrix is not None
    assert matrix.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_hostile_code_is_refused_not_crashed_on() -> None:
    nested = "```python\nx = " + "(" * 3_000 + "1" + ")" * 3_000 + "\n```"
    chained = "```python\ndef f():\n    return " + "+".join(["1"] * 3_500) + "\n```"

    assert shape_of(nested) is None
    assert shape_of(chained) is None
