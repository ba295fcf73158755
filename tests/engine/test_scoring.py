"""Scorers: the heuristic's penalties, its arithmetic checker, the logprob scorer, the registry.

The GSM8K prompts and answers below are real rows of the RouteLLM data set
(`routellm_gpt4_vs_mixtral/gsm8k_responses.csv`, Apache-2.0, lm-sys/RouteLLM): Mixtral's
answers, one right, one with a wrong calculator annotation, one cut off mid-calculation.
"""

from __future__ import annotations

import math
import time

import pytest

from routing.engine import HeuristicScorer, LogprobScorer, scorer_for
from routing.engine.ports import Scorer
from routing.engine.scoring import (
    SCORERS,
    check_arithmetic,
    evaluate,
    features,
    final_number,
    heuristic_opinion,
    logprob_features,
)
from testing.fakes import chat, completion

JACK_PROMPT = "Jack had $100. Sophia gave him 1/5 of her $100. How many dollars does Jack have now?"
JACK_RIGHT = (
    " Sophia gave Jack 1/5 x 100 = $<<1/5*100=20>>20.\nSo Jack has 100 + 20 = $<<100+20=120>>120 now.\n#### 120\n\n"
)
GERALD_PROMPT = (
    "Gerald and Julia divided $100 in the ratio 3:2. If Gerald spent $10 on a book, how much money did he have left?"
)
# 3 / (3 + 2) x 100 is 60, not 45: Mixtral's own annotation gives the mistake away.
GERALD_WRONG = (
    " Gerald received 3 / (3 + 2) x 100 = $<<3/(3+2)*100=45>>45 from the division.\n"
    "He spent 10 dollars on a book, so he has 45 - 10 = $<<45-10=35>>35 left.\n#### 35\n\n"
)
WENDI_PROMPT = (
    "Every day, Wendi feeds each of her chickens three cups of mixed chicken feed, containing seeds, mealworms and "
    "vegetables to help keep them healthy.  She gives the chickens their feed in three separate meals. In the "
    "morning, she gives her flock of chickens 15 cups of feed.  In the afternoon, she gives her chickens another "
    "25 cups of feed.  How many cups of feed does she need to give her chickens in the final meal of the day if "
    "the size of Wendi's flock is 20 chickens?"
)
WENDI_CUT_OFF = (
    " Wendi gives her chickens 15 cups in the morning and 25 cups in the afternoon, "
    "which is a total of 15 + 25 = <<15+2"
)

FAQ_PROMPT = "What is your return policy for damaged books?"
FAQ_ANSWER = "You can return a damaged book within 30 days for a full refund; we pay the return shipping."

heuristic = HeuristicScorer()


def score(text: str, prompt: str = FAQ_PROMPT, task: str = "faq", *, finish_reason: str = "stop") -> float:
    return heuristic.score(chat(prompt), completion(text, finish_reason=finish_reason), task=task)


# --- real GSM8K answers ----------------------------------------------------------------


def test_a_right_gsm8k_answer_scores_high() -> None:
    assert score(JACK_RIGHT, JACK_PROMPT, "math") >= 0.9


def test_a_gsm8k_answer_whose_stated_arithmetic_is_wrong_scores_low() -> None:
    assert score(GERALD_WRONG, GERALD_PROMPT, "math") <= 0.5


def test_a_gsm8k_answer_cut_off_mid_calculation_scores_low() -> None:
    # The recording lost the finish reason: the text alone must give the cut away.
    assert score(WENDI_CUT_OFF, WENDI_PROMPT, "math") <= 0.5


def test_an_unclassified_word_problem_is_checked_like_math() -> None:
    assert features(chat(JACK_PROMPT), completion(JACK_RIGHT), "unknown")["math"] == 1.0
    assert features(chat(JACK_PROMPT), completion(JACK_RIGHT), "faq")["math"] == 0.0


def test_an_answer_that_works_through_sums_is_math_even_when_the_prompt_spells_numbers_out() -> None:
    prompt = "Ants carried off a final french fry, leaving five behind. How many fries were there?"
    working = "There were 5 + 1 = 6 fries before the ants came, and 6 x 3 = 18 at the start.\n#### 18"

    assert features(chat(prompt), completion("There were eighteen fries."), "unknown")["math"] == 0.0
    assert features(chat(prompt), completion(working), "unknown")["math"] == 1.0


def test_a_math_answer_that_stops_mid_sentence_is_cut_off() -> None:
    # A real Mixtral GSM8K answer: it ends on a digit, but not on a finished sentence.
    text = "The total price increase over 36 months is 18 * $4 = $72.\n\nTherefore, the price of the bag after 3"

    assert features(chat(JACK_PROMPT), completion(text), "math")["truncated"] == 1.0
    assert features(chat(JACK_PROMPT), completion(text + " years is $122."), "math")["truncated"] == 0.0


# --- penalties -------------------------------------------------------------------------


def test_a_plain_good_answer_scores_one() -> None:
    assert score(FAQ_ANSWER) == 1.0


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_an_empty_answer_scores_zero(text: str) -> None:
    assert score(text) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "As an AI language model, I cannot access your order history.",
        "I am unable to look up return policies.",
        "I won\u2019t answer that.",  # a typographic apostrophe
    ],
)
def test_a_refusal_scores_low(text: str) -> None:
    assert score(text) <= 0.3


def test_each_hedge_costs_confidence_up_to_a_cap() -> None:
    one = score(f"I think {FAQ_ANSWER}")
    two = score(f"I think {FAQ_ANSWER} Maybe.")
    many = score(f"I'm not sure, but I think it might be possibly {FAQ_ANSWER} Maybe. I believe so.")

    assert 1.0 > one > two > many
    assert many == pytest.approx(0.7)


def test_an_answer_cut_off_by_the_token_limit_scores_lower() -> None:
    assert score(FAQ_ANSWER, finish_reason="length") <= 0.5


def test_an_answer_that_used_every_requested_token_counts_as_cut_off() -> None:
    capped = heuristic.score(chat(FAQ_PROMPT, max_tokens=50), completion(FAQ_ANSWER, output_tokens=50), task="faq")

    assert capped <= 0.5


def test_a_chat_answer_may_end_without_punctuation() -> None:
    assert score("Hello! How can I help you today", "hi", "greeting") == 1.0


def test_an_answer_ending_in_the_middle_of_a_sum_is_cut_off() -> None:
    assert score("The two volumes cost 12 +") <= 0.5
    assert score("The two volumes cost <<12+1") <= 0.5  # an unclosed calculator annotation


def test_a_looping_answer_scores_low() -> None:
    loop = "You can return it within 30 days.\n" * 12

    assert features(chat(FAQ_PROMPT), completion(loop), "faq")["repetition"] > 0.9
    assert score(loop) <= 0.5


def test_a_loop_within_one_line_is_repetition() -> None:
    loop = "Thank you for your question. " + "and then the refund and then the refund " * 10

    assert score(loop) <= 0.5


def test_short_lines_repeated_are_repetition() -> None:
    assert features(chat(FAQ_PROMPT), completion("Yes.\n" * 6), "faq")["repetition"] > 0.8


def test_ordinary_prose_is_not_repetition() -> None:
    assert features(chat(FAQ_PROMPT), completion(FAQ_ANSWER * 2), "faq")["repetition"] < 0.6
    assert features(chat(FAQ_PROMPT), completion(FAQ_ANSWER), "faq")["repetition"] == 0.0


def test_a_two_word_answer_is_too_short_except_for_a_greeting() -> None:
    assert score("Thirty days.") == pytest.approx(0.7)
    assert score("Hi there!", "Hello", "greeting") == 1.0


def test_a_math_answer_without_a_final_number_is_penalised() -> None:
    text = "Sophia gives Jack a fifth of her money, so Jack ends up with more than he started with."

    assert features(chat(JACK_PROMPT), completion(text), "math")["no_final_answer"] == 1.0
    assert score(text, JACK_PROMPT, "math") < score(JACK_RIGHT, JACK_PROMPT, "math")


def test_a_fractional_answer_to_how_many_is_penalised() -> None:
    text = "There are 39 / 2 = 19.5 yellow cards.\n#### 19.5"
    whole = "There are 38 / 2 = 19 yellow cards.\n#### 19"
    prompt = "How many yellow cards are there if there are 39 red and green cards?"

    assert score(text, prompt, "math") < score(whole, prompt, "math")
    assert features(chat("How much does each of 2 books cost?"), completion(text), "math")["fractional_count"] == 0.0


def test_long_working_costs_some_confidence() -> None:
    short = "Jack has 100 + 20 = 120 dollars.\n#### 120"
    padded = (
        "First, read the problem carefully and list what we know. Jack starts with one hundred dollars of his "
        "own. His friend Sophia also has one hundred dollars, and she decides to give Jack one fifth of that "
        "amount. To find a fifth of something we divide it into five equal parts and keep one of them. Five "
        "equal parts of a hundred dollars are twenty dollars each, so Sophia hands over twenty dollars. Jack "
        "keeps everything he already had, because the question never says he spent any of it. Adding the gift "
        "to his savings gives the total he holds at the end of the story.\n"
    ) + short

    assert score(padded, JACK_PROMPT, "math") < score(short, JACK_PROMPT, "math")
    assert score(padded, JACK_PROMPT, "math") >= 0.75


def test_scores_stay_within_zero_and_one() -> None:
    worst = "I'm sorry, but I can't. I think maybe 2 + 2 = 5.\n" * 10

    assert score(worst, JACK_PROMPT, "math", finish_reason="length") == 0.0


def test_features_are_all_numbers() -> None:
    found = features(chat(GERALD_PROMPT), completion(GERALD_WRONG), "math")

    assert all(isinstance(value, float) for value in found.values())
    assert found["arithmetic_errors"] == 1.0
    assert found["arithmetic_checked"] == 2.0


# --- the arithmetic checker --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("3 x 60", 180.0),
        ("3 × 60", 180.0),
        ("$1,200 * 15%", 180.0),
        ("100 / (100 / 60 + 1)", 37.5),
        ("-48 + 21 - 3", -30.0),
        ("1,048,576", 1048576.0),
    ],
)
def test_evaluates_plain_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "2 ** 1000", "1 / 0", "9 // 2", "(" * 150 + "1" + ")" * 150, "3 apples"],
)
def test_refuses_anything_but_plain_arithmetic(expression: str) -> None:
    assert evaluate(expression) is None


@pytest.mark.parametrize(
    ("text", "checked", "wrong"),
    [
        ("<<9*2=18>>", 1, 0),
        ("<<9*2=19>>", 1, 1),
        ("She sells 9 * $2 = $<<9*2=18>>18.", 1, 0),  # the annotation and its prose are one sum
        ("5 + 3 = 9 apples", 1, 1),
        ("10 / 3 = 3.33 each", 1, 0),  # rounded to the places written
        ("10 / 3 = 3.5 each", 1, 1),
        ("0.1 + 0.2 = 0.4", 1, 1),  # float noise is not a licence to round up
        ("100 / 3 = 33 people", 1, 0),  # whole people: rounding down is fine
        ("(12 / 20) x 100 = 60%", 1, 0),  # "%" as a label
        ("2300 x 100% = 2,300", 1, 0),  # "%" as /100
        ("5 x 2 = 10 x 3 = 30", 1, 0),  # "then times three", not 10 = 30
        ("<<4*3+6=18+6=24>>", 2, 1),  # a calculator chain must hold link by link
        ("x * 4 + 8 = 40", 0, 0),  # algebra, not 4 + 8 = 40
        ("21 - 3 = 2 * S", 0, 0),
        ("Step 1 = 3", 0, 0),
        ("He earns 6 x $6000 = $36,00", 0, 0),  # cut off inside the number
    ],
)
def test_checks_the_arithmetic_an_answer_states(text: str, checked: int, wrong: int) -> None:
    assert check_arithmetic(text) == (checked, wrong)


def test_only_the_start_of_a_huge_answer_is_checked() -> None:
    assert check_arithmetic("2 + 2 = 5. " + "x" * 20_000 + " 2 + 2 = 7") == (1, 1)


def test_a_hostile_answer_does_not_stall_the_checker() -> None:
    # A run of brackets made an unbounded `\(*` backtrack for seconds.
    started = time.perf_counter()
    check_arithmetic("(" * 20_000)
    check_arithmetic("3 x 60 = 180 and 2 * $1,000 = $2,000. " * 500)

    assert time.perf_counter() - started < 1.0


def test_markdown_escaped_multiplication_is_checked() -> None:
    assert check_arithmetic(r"John beats 20 \* 80/100 = 17 people.") == (1, 1)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("So 4 + 4 = 8.\n#### 8", 8.0),
        ("The answer is $1,250.", 1250.0),
        ("\\boxed{42}, which is 6 x 7.", 42.0),
        ("Jack has 120 dollars now.", 120.0),
        ("Jack has more money now.", None),
    ],
)
def test_finds_the_final_number(text: str, number: float | None) -> None:
    assert final_number(text) == number


# --- the logprob scorer ------------------------------------------------------------------

logprob = LogprobScorer()


def test_logprob_confidence_is_the_geometric_mean_token_probability() -> None:
    sure = completion(FAQ_ANSWER, logprobs=(-0.01, -0.02, -0.03))
    unsure = completion(FAQ_ANSWER, logprobs=(-1.0, -2.0, -3.0))

    assert logprob.score(chat(FAQ_PROMPT), sure, task="faq") == pytest.approx(math.exp(-0.02))
    assert logprob.score(chat(FAQ_PROMPT), unsure, task="faq") == pytest.approx(math.exp(-2.0))


def test_logprob_scorer_ignores_soft_heuristic_penalties() -> None:
    hedged = completion(f"I think {FAQ_ANSWER}", logprobs=(-0.01,))

    assert logprob.score(chat(FAQ_PROMPT), hedged, task="faq") == pytest.approx(math.exp(-0.01))


def test_a_confident_refusal_still_scores_low() -> None:
    refusal = completion("I'm sorry, but I can't help with that.", logprobs=(-0.001,) * 10)

    assert logprob.score(chat(FAQ_PROMPT), refusal, task="faq") <= 0.3


def test_confident_wrong_arithmetic_still_scores_low() -> None:
    wrong = completion(GERALD_WRONG, logprobs=(-0.001,) * 10)

    assert logprob.score(chat(GERALD_PROMPT), wrong, task="math") <= 0.5


@pytest.mark.parametrize("logprobs", [None, ()])
def test_without_logprobs_the_logprob_scorer_is_the_heuristic(logprobs: tuple[float, ...] | None) -> None:
    for text, prompt in ((GERALD_WRONG, GERALD_PROMPT), (JACK_RIGHT, JACK_PROMPT), (f"Maybe {FAQ_ANSWER}", FAQ_PROMPT)):
        answer = completion(text, logprobs=logprobs)
        expected = heuristic.score(chat(prompt), answer, task="math")

        assert logprob.score(chat(prompt), answer, task="math") == expected


# --- no opinion, huge numbers, logprob features ------------------------------------------

MCQ_PROMPT = "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium\nAnswer:"


def test_the_heuristic_has_no_opinion_on_a_clean_answer_it_cannot_check() -> None:
    assert heuristic_opinion(chat(FAQ_PROMPT), completion(FAQ_ANSWER), "faq") is None
    assert heuristic_opinion(chat(MCQ_PROMPT), completion("B"), "unknown") is None
    assert heuristic.opinion(chat(MCQ_PROMPT), completion("B"), task="unknown") is None


def test_the_heuristic_has_an_opinion_on_arithmetic_and_on_visible_failures() -> None:
    assert heuristic_opinion(chat(JACK_PROMPT), completion(JACK_RIGHT), "math") == score(
        JACK_RIGHT, JACK_PROMPT, "math"
    )
    assert heuristic_opinion(chat(FAQ_PROMPT), completion("I'm sorry, but I can't help."), "faq") is not None
    assert heuristic_opinion(chat(FAQ_PROMPT), completion(""), "faq") == 0.0


def test_a_letter_answering_a_multiple_choice_question_is_not_too_short() -> None:
    assert features(chat(MCQ_PROMPT), completion("B"), "unknown")["too_short"] == 0.0
    assert features(chat(MCQ_PROMPT), completion("Hmm."), "unknown")["too_short"] == 1.0


@pytest.mark.parametrize("digits", [309, 400, 5_000])
def test_a_number_too_large_for_a_float_keeps_every_feature_finite(digits: int) -> None:
    huge = "9" * digits
    text = f"He has {huge} + 1 = {huge}0 apples and {huge}.5 pears.\n#### {huge}"

    values = features(chat(JACK_PROMPT), completion(text), "math")

    assert all(math.isfinite(value) for value in values.values())
    assert final_number(text) is None  # no finite value to report
    assert math.isfinite(score(text, JACK_PROMPT, "math"))


def test_arithmetic_that_overflows_is_not_checked() -> None:
    huge = "9" * 200
    assert evaluate(f"{huge}.0 * {huge}.0") is None
    assert check_arithmetic(f"{huge}.0 * {huge}.0 = 5") == (0, 0)


def test_logprob_features_summarise_the_tokens() -> None:
    values = logprob_features([-0.1, -0.2, -3.0, -0.05, -0.4])

    assert values["logprob_mean"] == pytest.approx(-0.75)
    assert values["logprob_min"] == -3.0
    assert values["logprob_p10"] == pytest.approx(-1.96)  # numpy's linear percentile
    assert values["logprob_p25"] == pytest.approx(-0.4)
    assert values["logprob_count"] == 5.0


def test_logprob_features_are_finite_whatever_the_provider_sends() -> None:
    values = logprob_features([-math.inf, math.nan, -0.5, 0.2])

    assert all(math.isfinite(value) for value in values.values())
    assert values["logprob_min"] == -100.0  # impossible, not minus infinity
    assert values["logprob_count"] == 3.0  # the NaN is dropped
    assert logprob_features(None) == logprob_features([]) == dict.fromkeys(values, 0.0)


# --- the registry ------------------------------------------------------------------------


def test_scorers_are_found_by_name() -> None:
    assert isinstance(scorer_for("heuristic"), HeuristicScorer)
    assert isinstance(scorer_for("logprob"), LogprobScorer)
    assert all(isinstance(scorer, Scorer) and scorer.name == name for name, scorer in SCORERS.items())


def test_an_unknown_scorer_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown scorer 'oracle'.*heuristic, logprob"):
        scorer_for("oracle")
