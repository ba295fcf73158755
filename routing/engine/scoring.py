"""Scorers: how confident we are that an answer is good enough to return.

A cascade lives or dies by its scorer: too lenient and bad cheap answers reach users, too
strict and every request pays for two models. Two scorers ship here, both cheap enough to
run on every answer:

- `HeuristicScorer` needs nothing but the text. It starts from 1.0 and subtracts
  penalties for the ways cheap models visibly fail: cut-off output, refusals, hedging,
  loops, answers too short for the task, and, for arithmetic, a missing final number or
  a stated calculation that is wrong (it re-does the sums; on GSM8K a wrong stated
  result is one of the strongest signals available without a second model).
- `LogprobScorer` uses the model's own token probabilities when the provider returns
  them, kept honest by the heuristic's hard failures.

`features()` exposes every signal as a number so a learned scorer can reuse them, and
every one of them is finite whatever the text (a 400-digit "answer" included): a NaN or
an infinity would make training fail. `heuristic_opinion()` says when the heuristic has
evidence at all: on a clean answer to a task it cannot check (a letter for a multiple-
choice question, prose) it has none, and a combiner should ignore it rather than read
its 1.0 as confidence. `logprob_features()` summarises token log-probabilities.

Both run on every answer on the hot path, so the code favours cheap exact shortcuts
(no "=" means no sums to check; a regex anchored at the end only needs the end of the
text) over rescans; none of them changes a score.
"""

from __future__ import annotations

import ast
import functools
import itertools
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from routing.engine.answers import extract_answer, prompt_kind
from routing.engine.classify import MATH_PATTERN, UNKNOWN, classified_text, compiled
from routing.engine.ports import Scorer
from routing.engine.types import ChatRequest, Completion

Features = dict[str, float]

# --- phrases -------------------------------------------------------------------------

REFUSAL_PHRASES: Final = (
    "i can't",
    "i cannot",
    "i'm sorry, but",
    "as an ai",
    "i am unable",
    "i'm unable",
    "i am not able to",
    "i'm not able to",
    "i won't",
)
HEDGE_PHRASES: Final = (
    "i'm not sure",
    "i am not sure",
    "i think",
    "might be",
    "possibly",
    "it's unclear",
    "it is unclear",
    "i don't know",
    "i believe",
    "approximately",
    "maybe",
    "not possible to determine",
    "cannot be determined",
    "assuming",
    "let's assume",
)
# Tasks whose good answers can be a word or two.
SHORT_ANSWER_TASKS: Final = frozenset({"greeting"})
# Prompts that ask for a short answer (an option letter, a number, a date, yes or no):
# a one-word answer of that kind is complete, not too short.
SHORT_ANSWER_KINDS: Final = frozenset({"option", "number", "date", "yesno"})

# --- weights (subtracted from 1.0) -----------------------------------------------------

TRUNCATED_PENALTY: Final = 0.5
REFUSAL_PENALTY: Final = 0.8
HEDGE_PENALTY: Final = 0.1
HEDGE_PENALTY_CAP: Final = 0.3
DEGENERATE_PENALTY: Final = 0.6
TOO_SHORT_PENALTY: Final = 0.3
NO_FINAL_ANSWER_PENALTY: Final = 0.3
ARITHMETIC_ERROR_PENALTY: Final = 0.5
ARITHMETIC_EXTRA_ERROR_PENALTY: Final = 0.15
ARITHMETIC_PENALTY_CAP: Final = 0.8
FRACTIONAL_COUNT_PENALTY: Final = 0.15
LONG_WORKING_PENALTY: Final = 0.2
LONG_PROBLEM_PENALTY: Final = 0.05

MIN_WORDS: Final = 3
# An unclassified answer stating this many sums is treated as arithmetic.
MATH_ANSWER_EQUALITIES: Final = 2
# Worked arithmetic longer than this many words costs confidence, up to the full
# penalty at LONG_WORKING_WORDS_MAX: long working means many steps, and every step is a
# chance to slip (on GSM8K, Mixtral's wrong answers are a fifth longer than its right ones).
LONG_WORKING_WORDS: Final = 40
LONG_WORKING_WORDS_MAX: Final = 200
# The same for the problem itself, more gently: a long word problem has more steps.
LONG_PROBLEM_WORDS: Final = 40
LONG_PROBLEM_WORDS_MAX: Final = 120
# Repetition below this is ordinary prose; above it the penalty ramps up to full at 1.0.
REPETITION_ONSET: Final = 0.3
NGRAM: Final = 4
# Arithmetic checks only look this far into an answer and check this many sums: enough
# for any real working, and a bound on the work a hostile or looping answer can cause.
MAX_CHECKED_CHARS: Final = 20_000
MAX_CHECKED_EQUALITIES: Final = 100
MAX_EXPRESSION_CHARS: Final = 200


# --- features ------------------------------------------------------------------------


def features(chat: ChatRequest, completion: Completion, task: str) -> Features:
    """Every signal the heuristic uses, as numbers (flags are 0.0 or 1.0)."""
    text = normalise_quotes(completion.text)
    lowered = text.lower()
    prompt = chat.prompt
    checked, errors = check_arithmetic(text)
    math_task = is_math_task(chat, task, checked, prompt=prompt)
    final = final_number(text)
    words = len(text.split())
    return {
        "empty": flag(not text.strip()),
        "truncated": flag(is_truncated(chat, completion, text, math_task=math_task)),
        "refusals": float(count_phrases(lowered, REFUSAL_PHRASES)),
        "hedges": float(count_phrases(lowered, HEDGE_PHRASES)),
        "repetition": repetition(text),
        "words": float(words),
        "prompt_words": float(len(prompt.split())),
        "too_short": flag(
            words < MIN_WORDS and task not in SHORT_ANSWER_TASKS and not states_short_answer(prompt, text)
        ),
        "math": flag(math_task),
        "no_final_answer": flag(math_task and final is None),
        "fractional_count": flag(math_task and is_fractional_count(prompt, final)),
        "arithmetic_checked": float(checked),
        "arithmetic_errors": float(errors),
    }


def flag(condition: bool) -> float:
    return 1.0 if condition else 0.0


def states_short_answer(prompt: str, text: str) -> bool:
    """The prompt asks for a short answer of some kind, and the text gives one."""
    kind = prompt_kind(prompt)
    return kind in SHORT_ANSWER_KINDS and extract_answer(text, kind, prompt=prompt) is not None


def normalise_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def count_phrases(lowered: str, phrases: tuple[str, ...]) -> int:
    return sum(map(lowered.count, phrases))


_MATH_PROMPT = compiled(MATH_PATTERN)


def is_math_task(chat: ChatRequest, task: str, equalities: int, *, prompt: str | None = None) -> bool:
    """A "math" task, or an unclassified one whose prompt reads like a word problem or
    whose answer works through sums (word problems spell numbers out: "five apples")."""
    if task == "math":
        return True
    if task not in (UNKNOWN, ""):
        return False
    if equalities >= MATH_ANSWER_EQUALITIES:
        return True
    text = classified_text(chat.prompt if prompt is None else prompt)  # bounded, as classification is
    return _MATH_PROMPT is not None and bool(_MATH_PROMPT.search(text))


# --- truncation ----------------------------------------------------------------------

# An operator, "=", an open bracket, a dangling comma or colon, or half a thousands group.
_MID_EXPRESSION = re.compile(r"(?:[=+\-*/(,:\u00d7]|\s[xX]|\d,\d{1,2})$")
# The longest text _MID_EXPRESSION can match: only this much of the end needs searching.
_MID_EXPRESSION_CHARS = 4
_TERMINAL = re.compile(r"""[.!?)\]"'*`]$""")


def is_truncated(chat: ChatRequest, completion: Completion, text: str, *, math_task: bool) -> bool:
    """Cut off by the token limit, or visibly stopped mid-expression or mid-sentence.

    The text tests matter for recorded answers whose finish reason was lost: in the
    RouteLLM GSM8K data 41 Mixtral answers stop mid-calculation, all of them wrong.
    """
    at_limit = chat.max_tokens is not None and completion.output_tokens >= chat.max_tokens
    return (
        completion.finish_reason == "length"
        or at_limit
        or stops_mid_expression(text)
        or (math_task and lacks_an_ending(text))
    )


def stops_mid_expression(text: str) -> bool:
    stripped = text.rstrip()
    unclosed_annotation = stripped.rfind("<<") > stripped.rfind(">>")
    return unclosed_annotation or bool(_MID_EXPRESSION.search(stripped[-_MID_EXPRESSION_CHARS:]))


def lacks_an_ending(text: str) -> bool:
    """Worked answers end with a sentence or a `#### 42` line; chat may end anyhow."""
    lines = text.strip().splitlines()
    last_line = lines[-1].strip() if lines else ""
    return bool(last_line) and not (last_line.startswith("####") or _TERMINAL.search(last_line[-1:]))


# --- repetition ----------------------------------------------------------------------


def repetition(text: str) -> float:
    """How much of the answer repeats itself, 0 (none) to 1 (one line over and over)."""
    return max(line_repetition(text), ngram_repetition(text))


def line_repetition(text: str) -> float:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 4:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


_WORD = re.compile(r"\w+")
MIN_NGRAMS: Final = 20


def ngram_repetition(text: str) -> float:
    words = _WORD.findall(text.lower())
    count = len(words) - NGRAM + 1
    if count < MIN_NGRAMS:
        return 0.0
    grams = set(zip(*(words[i:] for i in range(NGRAM)), strict=False))
    return 1.0 - len(grams) / count


# --- final answer --------------------------------------------------------------------

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_FINAL_MARKERS = (
    re.compile(rf"####\s*({_NUMBER})"),
    re.compile(rf"\\boxed\{{\s*({_NUMBER})"),
    re.compile(rf"\banswer(?: is|:)\s*:?\s*({_NUMBER})", re.IGNORECASE),
)
_ANY_NUMBER = re.compile(_NUMBER)
_COUNT_QUESTION = re.compile(r"\bhow many\b", re.IGNORECASE)


def final_number(text: str) -> float | None:
    """The answer's final numeric result: a `####`/boxed/"answer is" one, else the
    last number on the last line."""
    for marker in _FINAL_MARKERS:
        found = marker.findall(text)
        if found:
            return parse_number(found[-1])
    lines = text.strip().splitlines()
    numbers = _ANY_NUMBER.findall(lines[-1]) if lines else []
    return parse_number(numbers[-1]) if numbers else None


def parse_number(raw: str) -> float | None:
    """The number `raw` writes, or None; a number too large for a float (309+ digits) is None."""
    try:
        value = float(raw.replace("$", "").replace(",", "").rstrip("."))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_fractional_count(prompt: str, final: float | None) -> bool:
    """A "how many" question answered with a fraction: half a person is a wrong answer."""
    return final is not None and not final.is_integer() and bool(_COUNT_QUESTION.search(prompt))


# --- arithmetic ----------------------------------------------------------------------

_ANNOTATION = re.compile(rf"<<([^<>]{{1,{MAX_EXPRESSION_CHARS}}})>>")
# Bracket runs are bounded: an unbounded `\(*` makes a line of 20,000 "(" take seconds.
_OPERAND = r"\({0,4}\$?\d+(?:,\d{3})*(?:\.\d+)?%?\){0,4}"
_SIDE = rf"-?{_OPERAND}(?:[ \t]*[-+*/xX][ \t]*{_OPERAND})*"
# Not the tail of a longer expression (`x * 4 + 8 = 40` is algebra, not 4 + 8 = 40) and
# no side followed by more algebra (`21 - 3 = 2 * S`).
_NOT_A_TAIL = r"(?<![\w.,*/+\-^)$])(?<![*/+\-^] )"
_NOT_CONTINUED = r"(?![ \t]*[-+*/^]|\w|[.,]\d)"
_EQUATION = re.compile(rf"{_NOT_A_TAIL}{_SIDE}(?:[ \t]*=[ \t]*{_SIDE}{_NOT_CONTINUED})+")
_PLAIN_NUMBER = re.compile(r"^\(*-?\$?\d+(?:,\d{3})*(?:\.\d+)?%?\)*$")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PYTHON_ARITHMETIC = re.compile(r"^[\d.+\-*/() ]+$")
_BINARY_OPS: Final[dict[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}

Equality = tuple[str, str]


def check_arithmetic(text: str) -> tuple[int, int]:
    """(equalities checked, equalities wrong) among the calculations the answer states.

    Both GSM8K calculator annotations (`<<48/2=24>>`) and prose (`48 / 2 = 24`) count;
    an annotation and the prose around it are usually the same sum, so equalities are
    de-duplicated before counting.
    """
    if "=" not in text[:MAX_CHECKED_CHARS]:
        return 0, 0  # every annotation or prose sum has one
    verdicts: dict[Equality, bool] = {}
    equalities = stated_equalities(unescape(text[:MAX_CHECKED_CHARS]))
    for left, right in equalities[:MAX_CHECKED_EQUALITIES]:
        verdict = equality_holds(left, right)
        if verdict is not None:
            verdicts[(compact(left), compact(right))] = verdict
    return len(verdicts), sum(1 for ok in verdicts.values() if not ok)


def unescape(text: str) -> str:
    """Markdown escapes and typographic operators → plain ASCII arithmetic."""
    return (
        text.replace("\\*", "*")
        .replace("\\times", "*")
        .replace("\u00d7", "*")
        .replace("\u00f7", "/")
        .replace("\u2212", "-")
    )


_SPACE_OR_DOLLAR = re.compile(r"[\s$]")


def compact(expression: str) -> str:
    return _SPACE_OR_DOLLAR.sub("", expression).replace("x", "*").replace("X", "*")


def stated_equalities(text: str) -> list[Equality]:
    """(left, right) pairs to verify, from annotations first, then from the prose."""
    pairs: list[Equality] = []
    for annotation in _ANNOTATION.findall(text):
        pairs.extend(annotation_pairs(annotation))
    for match in _EQUATION.finditer(_ANNOTATION.sub("", text)):
        pairs.extend(prose_pairs(match.group(0)))
    return pairs


def annotation_pairs(annotation: str) -> list[Equality]:
    """Every link of a calculator chain must hold: `<<(230-84)/2=73/2=36.5>>` is wrong."""
    parts = [part.strip() for part in annotation.split("=")]
    return list(itertools.pairwise(parts))


def prose_pairs(equation: str) -> list[Equality]:
    """Links that end in a plain number: people write `5 x 2 = 10 x 3 = 30` and mean
    "then times three", so an expression = expression link proves nothing."""
    parts = [part.strip() for part in equation.split("=")]
    links = itertools.pairwise(parts)
    return [(left, right) for left, right in links if _PLAIN_NUMBER.match(right)]


def equality_holds(left: str, right: str) -> bool | None:
    """Whether `left = right` is true to the precision `right` is written in.

    None when either side is not plain arithmetic, or when both are bare numbers
    ("Step 1 = 3" checks nothing). "%" is read both as /100 and as a unit label, since
    answers write `0.6 x 100 = 60%` as often as `60% x 50 = 30`.
    """
    if _PLAIN_NUMBER.match(left) and _PLAIN_NUMBER.match(right):
        return None
    if "%" not in left and "%" not in right:
        return holds_with_percent(left, right, True)  # both readings are the same
    verdicts = [holds_with_percent(left, right, as_fraction) for as_fraction in (True, False)]
    if None in verdicts:
        return None
    return any(verdicts)


def holds_with_percent(left: str, right: str, as_fraction: bool) -> bool | None:
    left_value = evaluate(left, percent_as_fraction=as_fraction)
    right_value = evaluate(right, percent_as_fraction=as_fraction)
    if left_value is None or right_value is None:
        return None
    if not _PLAIN_NUMBER.match(right):  # an expression is exact, up to float error
        return math.isclose(left_value, right_value, rel_tol=1e-9, abs_tol=1e-9)
    step = written_step(right) / (100 if as_fraction and "%" in right else 1)
    return rounds_to(left_value, right_value, step)


def written_step(stated: str) -> float:
    """The last place `stated` is written to: 1 for "24", 0.01 for "3.33"."""
    decimals = stated.rstrip("%)").partition(".")[2]
    return float(10 ** -len(decimals))


def rounds_to(value: float, stated: float, step: float) -> bool:
    """Whether `stated` is `value` rounded down or up to a multiple of `step`.

    Either way is fine: "100 / 3 = 33 people" and "= 34 buses" are both sound.
    """
    steps = value / step
    nearest = round(steps)
    # Float noise (0.1 + 0.2) must not turn an exact result into a two-way rounding.
    candidates = {nearest} if math.isclose(steps, nearest, abs_tol=1e-6) else {math.floor(steps), math.ceil(steps)}
    return any(math.isclose(candidate * step, stated, rel_tol=1e-9, abs_tol=step / 1000) for candidate in candidates)


# Answers repeat the same small expressions and results ("24", "16 - 3") across requests;
# parsing one costs a compile() call. Bounded, so a hostile stream of answers can't grow it.
@functools.lru_cache(maxsize=4096)
def evaluate(expression: str, *, percent_as_fraction: bool = True) -> float | None:
    """The value of a plain arithmetic expression, or None if it is anything else.

    Numbers, + - * / (also x, × and ÷) and parentheses only. Parsed with `ast` and
    walked by hand, never `eval`: the text comes from a model.
    """
    source = to_python(expression, percent_as_fraction=percent_as_fraction)
    if source is None:
        return None
    try:
        value = arithmetic_value(ast.parse(source, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    # A long literal parses to inf, and inf * 0 to NaN: neither is checkable arithmetic.
    return value if math.isfinite(value) else None


def to_python(expression: str, *, percent_as_fraction: bool) -> str | None:
    """`$1,200 x 15%` → `1200*(15/100)`, or None when it is not arithmetic."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        return None
    source = _THOUSANDS_COMMA.sub("", unescape(expression)).replace("$", "")
    source = _TIMES_SIGN.sub("*", source)
    if "%" in source:
        source = _PERCENT.sub(r"(\1/100)" if percent_as_fraction else r"\1", source)
    return source if _PYTHON_ARITHMETIC.match(source) else None


_TIMES_SIGN = re.compile(r"(?<=[\d)\s])[xX](?=[\s\d(])")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def arithmetic_value(node: ast.expr) -> float:
    # Only digits reach the parser, so a constant is never a bool or a string.
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        apply = _BINARY_OPS[type(node.op)]
        return apply(arithmetic_value(node.left), arithmetic_value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = arithmetic_value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError("not plain arithmetic")


# --- penalties -----------------------------------------------------------------------


def truncation_penalty(f: Mapping[str, float]) -> float:
    return TRUNCATED_PENALTY * f["truncated"]


def refusal_penalty(f: Mapping[str, float]) -> float:
    return REFUSAL_PENALTY if f["refusals"] else 0.0


def hedging_penalty(f: Mapping[str, float]) -> float:
    return min(HEDGE_PENALTY * f["hedges"], HEDGE_PENALTY_CAP)


def repetition_penalty(f: Mapping[str, float]) -> float:
    return DEGENERATE_PENALTY * ramp(f["repetition"], REPETITION_ONSET, 1.0)


def length_penalty(f: Mapping[str, float]) -> float:
    return TOO_SHORT_PENALTY * f["too_short"]


def long_working_penalty(f: Mapping[str, float]) -> float:
    working = ramp(f["words"], LONG_WORKING_WORDS, LONG_WORKING_WORDS_MAX)
    problem = ramp(f["prompt_words"], LONG_PROBLEM_WORDS, LONG_PROBLEM_WORDS_MAX)
    return f["math"] * (LONG_WORKING_PENALTY * working + LONG_PROBLEM_PENALTY * problem)


def ramp(value: float, start: float, full: float) -> float:
    """0 up to `start`, rising linearly to 1 at `full`."""
    return clamp((value - start) / (full - start))


def final_answer_penalty(f: Mapping[str, float]) -> float:
    return NO_FINAL_ANSWER_PENALTY * f["no_final_answer"] + (FRACTIONAL_COUNT_PENALTY * f["fractional_count"])


def arithmetic_penalty(f: Mapping[str, float]) -> float:
    errors = f["arithmetic_errors"]
    if not errors:
        return 0.0
    extra = ARITHMETIC_EXTRA_ERROR_PENALTY * (errors - 1)
    return min(ARITHMETIC_ERROR_PENALTY + extra, ARITHMETIC_PENALTY_CAP)


Penalty = Callable[[Mapping[str, float]], float]
# The failures no amount of model confidence excuses.
HARD_PENALTIES: Final[tuple[Penalty, ...]] = (
    truncation_penalty,
    refusal_penalty,
    repetition_penalty,
    arithmetic_penalty,
)
PENALTIES: Final[tuple[Penalty, ...]] = (
    *HARD_PENALTIES,
    hedging_penalty,
    length_penalty,
    final_answer_penalty,
    long_working_penalty,
)


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def penalised(start: float, f: Mapping[str, float], penalties: tuple[Penalty, ...]) -> float:
    """`start` minus `penalties`, in [0, 1]; an empty answer is 0 whatever else."""
    if f["empty"]:
        return 0.0
    return clamp(start - sum([penalty(f) for penalty in penalties]))


# --- scorers -------------------------------------------------------------------------


def has_opinion(f: Mapping[str, float]) -> bool:
    """Whether the heuristic saw evidence: an answer it could check (math), or a failure."""
    return bool(f["empty"] or f["math"] or any(penalty(f) > 0.0 for penalty in PENALTIES))


def heuristic_opinion(chat: ChatRequest, completion: Completion, task: str) -> float | None:
    """The heuristic score where it has evidence, None ("no opinion") where it has none."""
    f = features(chat, completion, task)
    return penalised(1.0, f, PENALTIES) if has_opinion(f) else None


class HeuristicScorer:
    """1.0 minus penalties for visible failure modes; needs nothing but the text.

    `score` is what the cascade uses (1.0 when nothing is wrong); `opinion` is None
    where the heuristic has no evidence either way, for combiners and benchmarks.
    """

    name = "heuristic"

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float:
        return penalised(1.0, features(chat, completion, task), PENALTIES)

    def opinion(self, chat: ChatRequest, completion: Completion, *, task: str) -> float | None:
        return heuristic_opinion(chat, completion, task)


class LogprobScorer:
    """The model's own confidence: exp(mean token logprob), minus the hard failures.

    A model can be confidently wrong in ways the text shows (a fluent refusal, a loop,
    a wrong sum), so the heuristic's hard penalties still apply. Without logprobs (the
    provider or model does not return them) this is the heuristic scorer.
    """

    name = "logprob"

    def __init__(self, fallback: HeuristicScorer | None = None) -> None:
        self.fallback = fallback or HeuristicScorer()

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float:
        if not completion.logprobs:
            return self.fallback.score(chat, completion, task=task)
        confidence = mean_token_probability(completion.logprobs)
        return penalised(confidence, features(chat, completion, task), HARD_PENALTIES)


def mean_token_probability(logprobs: tuple[float, ...]) -> float:
    """exp(mean logprob): the geometric mean of the token probabilities."""
    finite = finite_logprobs(logprobs)
    return clamp(math.exp(sum(finite) / len(finite))) if finite else 0.0


# A token log-probability below this is as good as impossible; -inf (a provider's way of
# writing probability 0) is read as this, so every summary stays finite.
LOGPROB_FLOOR: Final = -100.0
LOGPROB_FEATURES: Final = ("logprob_mean", "logprob_min", "logprob_p10", "logprob_p25", "logprob_count")


def finite_logprobs(logprobs: Sequence[float]) -> list[float]:
    """The log-probabilities as finite numbers in [LOGPROB_FLOOR, 0]; NaNs dropped."""
    return [min(0.0, max(LOGPROB_FLOOR, value)) for value in logprobs if not math.isnan(value)]


def logprob_features(token_logprobs: Sequence[float] | None) -> dict[str, float]:
    """Mean, minimum, 10th and 25th percentile of the answer's token log-probabilities,
    and how many there were; all 0 without any (the caller's flag tells the two apart).

    Low percentiles catch the one or two tokens a model was unsure of, which a mean over
    a long answer hides.
    """
    values = sorted(finite_logprobs(token_logprobs or ()))
    if not values:
        return dict.fromkeys(LOGPROB_FEATURES, 0.0)
    return {
        "logprob_mean": sum(values) / len(values),
        "logprob_min": values[0],
        "logprob_p10": percentile(values, 0.10),
        "logprob_p25": percentile(values, 0.25),
        "logprob_count": float(len(values)),
    }


def percentile(ordered: Sequence[float], share: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- registry ------------------------------------------------------------------------

SCORERS: dict[str, Scorer] = {scorer.name: scorer for scorer in (HeuristicScorer(), LogprobScorer())}


def scorer_for(name: str) -> Scorer:
    """The registered scorer called `name`; ValueError names the known ones."""
    try:
        return SCORERS[name]
    except KeyError:
        known = ", ".join(sorted(SCORERS))
        raise ValueError(f"unknown scorer {name!r} (known: {known})") from None
