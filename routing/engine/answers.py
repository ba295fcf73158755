"""Final-answer extraction: the short answer a model's text commits to, in a canonical form.

Two answers to the same question agree when their extracted forms are equal, which is
what self-consistency and cross-model agreement (`agreement.py`) vote on. Kinds:

- ``number``: a `\\boxed{}` one, a `#### 42` line, "the answer is 42", else the last
  number; commas, `$`, `%` and units dropped, fractions (`3/4`, `\\frac{3}{4}`, `1 1/2`)
  evaluated, written without trailing zeros ("18", "0.75", "-3.5").
- ``option``: a multiple-choice letter A-E ("(B)", "Answer: C", "the answer is B", a lone
  "D" line); when the prompt lists the options, an answer that quotes exactly one
  option's text counts as that letter.
- ``date``: MM/DD/YYYY from "5/1/2021", "2021-05-01", "May 1, 2021" or "1 May 2021".
- ``yesno``: "yes" or "no".
- ``span``: a short answer ("Answer: Paris"), lower-cased, without punctuation or articles.

`extract_answer(text, kind="auto", prompt=...)` picks the kind from the prompt (options,
a date format, a word problem, a yes/no question) and the text when asked to; code and
long free text have no extractable answer (None): compare those by embeddings instead.
Nothing here runs model output. Every pattern is bounded, and only the last
`MAX_CHARS` characters of a text are read (final answers come last).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation, localcontext
from typing import Final, Literal

from routing.engine.classify import MATH_PATTERN, compiled

AnswerKind = Literal["auto", "number", "option", "date", "yesno", "span"]
KINDS: Final[tuple[str, ...]] = ("number", "option", "date", "yesno", "span")

MAX_CHARS: Final = 20_000
# Decimal places a number answer keeps: "0.3333333" and "0.333333" are one answer.
NUMBER_DECIMALS: Final = 6
# Longer runs of digits are compared as written, not as values.
MAX_NUMBER_DIGITS: Final = 400
# A span answer longer than this is free text, not a short answer.
MAX_SPAN_WORDS: Final = 8
# A whole answer this short may be a number or a span even without an answer marker.
SHORT_ANSWER_WORDS: Final = 12
LETTERS: Final = "ABCDE"

# --- patterns ---------------------------------------------------------------------------

# "answer is", "Answer:", "final answer =", "ans = " (program-of-thought's variable).
_MARKER = r"\b(?:final\s+)?(?:answer|ans)\b\s*(?:is\b|[:=])"
# An answer marker this many lines from the end or closer states the final answer.
MARKER_LINES: Final = 3
_NUMBER_TEXT = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_NUMBER = re.compile(
    r"(?<![\w.])(-?)\$?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(\d+(?:\.\d+)?)(?![\d/]))?"
)
_MIXED_NUMBER = re.compile(r"(?<![\w.])(-?)(\d+)\s+(\d+)/(\d+)(?![\d/])")
_FRAC = re.compile(r"\\d?frac\{\s*(-?[\d.,]+)\s*\}\{\s*(-?[\d.,]+)\s*\}")
_BOXED = re.compile(r"\\boxed\s*\{")
_HASHES = re.compile(rf"####\s*\**\s*({_NUMBER_TEXT}(?:\s*/\s*\d+)?)")
_NUMBER_MARKER = re.compile(rf"{_MARKER}[^\d\n-]{{0,20}}?({_NUMBER_TEXT}(?:\s*/\s*\d+)?)", re.IGNORECASE)
_DATE_LIKE = re.compile(r"\b\d{1,4}[/-]\d{1,2}[/-]\d{1,4}\b")

_LETTER_AFTER = r"(?![A-Za-z'\u2019])"
# Marker words in any case, the letter upper-case only: "the answer is a bit" names no option.
_OPTION_MARKER = re.compile(
    rf"\b(?i:answer|option|choice)\b(?:\s+(?i:is|would be|will be))?\s*[:=]?\s*(?i:option\s+|choice\s+)?"
    rf"[\(\[*\"']*\s*([A-E]){_LETTER_AFTER}"
)
_CORRECT_LETTER = re.compile(rf"\b\(?([A-E])\)?{_LETTER_AFTER}\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))")
_LEADING_LETTER = re.compile(rf"\A[\s*_\"'(\[]*([A-E])(?:\s*$|\s*[).:\]]|\s*\n|\s+-\s){_LETTER_AFTER}")
_PAREN_LETTER = re.compile(r"\(([A-E])\)")
_LONE_LETTER = re.compile(r"^[\s*_\"'(\[]*([A-E])[\s*_\"').\]:]*$", re.MULTILINE)
_OPTION_LINE = re.compile(r"^[ \t]*[\(\[]?([A-Ea-e])[\)\].:][ \t]*(\S[^\n]*)$", re.MULTILINE)

_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_PATTERNS: Final = (
    ("mdy", re.compile(r"(?<![\d/])(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?![\d/])")),
    ("ymd", re.compile(r"(?<![\d/])(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})(?![\d/])")),
    ("month_day_year", re.compile(rf"\b({_MONTH})\.?\s+{_DAY},?\s+(\d{{4}})\b", re.IGNORECASE)),
    ("day_month_year", re.compile(rf"\b{_DAY}(?:\s+of)?\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.IGNORECASE)),
)

_YES_NO_MARKER = re.compile(rf"{_MARKER}\W{{0,6}}(yes|no)\b", re.IGNORECASE)
_LEADING_YES_NO = re.compile(r"\A\W*(yes|no)\b", re.IGNORECASE)
_LAST_LINE_YES_NO = re.compile(r"^\W*(yes|no)\W*$", re.IGNORECASE)

_SPAN_MARKER = re.compile(
    r"(?:\bfinal answer\b|\bthe answer is\b|\banswer\s*:|^\s*a\s*:)\s*:?\s*([^\n]{1,200})", re.IGNORECASE | re.MULTILINE
)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_NON_WORD = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")

_DATE_QUESTION = re.compile(
    r"MM/DD/YYYY|YYYY-MM-DD|\bwhat (?:is|was|will be) the date\b|\bwhat date\b|\bwhich date\b", re.IGNORECASE
)
_CODE_REQUEST = re.compile(
    r"\b(?:write|implement|create|complete|fix)\b[^\n]{0,60}\b(?:function|program|script|class|method|code|query)\b"
    r"|\bin (?:python|javascript|java|c\+\+|rust|go|sql)\b|^\s*def \w+\(",
    re.IGNORECASE | re.MULTILINE,
)
_COUNT_QUESTION = re.compile(r"\bhow (?:many|much)\b", re.IGNORECASE)
_YES_NO_QUESTION = re.compile(
    r"(?:^|[.!?]\s+)(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had)\b[^.!?]{0,300}\?\s*$",
    re.IGNORECASE,
)
_CODE_TEXT = re.compile(r"```|^\s*(?:def |class |import |from \w+ import |function |#include)", re.MULTILINE)


# --- the entry point --------------------------------------------------------------------


def extract_answer(text: str, kind: str = "auto", *, prompt: str | None = None) -> str | None:
    """The final answer `text` commits to, canonicalised, or None when it states none.

    `kind` is one of `KINDS` or "auto" (decided by `answer_kind` from the prompt and
    the text). `prompt`, when given, also lets an option answer be matched by the
    option's text.
    """
    resolved = answer_kind(prompt, text) if kind == "auto" else kind
    if resolved is None:
        return None
    tail = text[-MAX_CHARS:]
    if resolved == "number":
        return extract_number(tail)
    if resolved == "option":
        return extract_option(tail, prompt=prompt)
    if resolved == "date":
        return extract_date(tail)
    if resolved == "yesno":
        return extract_yes_no(tail)
    if resolved == "span":
        return extract_span(tail)
    raise ValueError(f"unknown answer kind {kind!r} (known: auto, {', '.join(KINDS)})")


def answer_kind(prompt: str | None, text: str = "") -> str | None:
    """The kind of answer `prompt` asks for (or, without a prompt, `text` looks like).

    None means free text or code: no short answer to compare.
    """
    if prompt:
        from_prompt = prompt_kind(prompt[-MAX_CHARS:])
        if from_prompt is not None or _CODE_REQUEST.search(prompt[-MAX_CHARS:]):
            return from_prompt
    return text_kind(text[-MAX_CHARS:])


def prompt_kind(prompt: str) -> str | None:
    """The kind the prompt asks for, or None when the prompt does not say."""
    if len(prompt_options(prompt)) >= 2:
        return "option"
    if _DATE_QUESTION.search(prompt):
        return "date"
    if _CODE_REQUEST.search(prompt):
        return None
    math = compiled(MATH_PATTERN)
    if (math is not None and math.search(prompt)) or _COUNT_QUESTION.search(prompt):
        return "number"
    if _YES_NO_QUESTION.search(prompt.strip()):
        return "yesno"
    return None


def text_kind(text: str) -> str | None:
    """The kind of answer `text` states, judged from the text alone."""
    stripped = text.strip()
    if not stripped or _CODE_TEXT.search(stripped):
        return None
    if _BOXED.search(stripped) or _HASHES.search(stripped) or _NUMBER_MARKER.search(stripped):
        return "number"
    if _OPTION_MARKER.search(stripped) or _LEADING_LETTER.search(stripped):
        return "option"
    last_line = stripped.splitlines()[-1]
    if any(pattern.search(last_line) for _, pattern in _DATE_PATTERNS):
        return "date"
    if _LEADING_YES_NO.search(stripped):
        return "yesno"
    if len(stripped.split()) <= SHORT_ANSWER_WORDS:
        return "number" if extract_number(last_line) is not None else "span"
    return None


# --- numbers ----------------------------------------------------------------------------


def extract_number(text: str) -> str | None:
    """The final number: boxed, `####`, after "answer", else the last one in the text."""
    boxed = boxed_contents(text)
    if boxed:
        value = number_in(boxed[-1])
        if value is not None:
            return value
    hashes = _HASHES.findall(text)
    if hashes and (value := number_in(hashes[-1])) is not None:
        return value
    text = text.rstrip()
    marked = list(_NUMBER_MARKER.finditer(text))
    # An early "Answer: Janet uses 3 eggs ..." starts the working; only a late marker ends it.
    if marked and text.count("\n", marked[-1].start()) < MARKER_LINES:
        value = number_in(marked[-1].group(1))
        if value is not None:
            return value
    return number_in(text)


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}`, braces balanced."""
    contents = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for end in range(start, min(len(text), start + 500)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                contents.append(text[start:end])
                break
    return contents


def number_in(text: str) -> str | None:
    """The last number written in `text`, as a canonical string."""
    frac = _FRAC.findall(text)
    if frac:
        return canonical_number(frac[-1][0], frac[-1][1])
    text = _DATE_LIKE.sub(" ", text)
    mixed = list(_MIXED_NUMBER.finditer(text))
    plain = list(_NUMBER.finditer(text))
    if not plain:
        return None
    last = plain[-1]
    if mixed and mixed[-1].end() >= last.end():
        sign, whole, numerator, denominator = mixed[-1].groups()
        fraction = canonical_number(numerator, denominator)
        if fraction is not None:
            return canonical_number(f"{sign}{Decimal(whole) + Decimal(fraction)}")
    sign, digits, denominator = last.groups()
    return canonical_number(f"{sign}{digits}", denominator)


def canonical_number(raw: str, denominator: str | None = None) -> str | None:
    """`raw` (over `denominator`) rounded to `NUMBER_DECIMALS` places, without trailing zeros.

    Exact decimal arithmetic, so a 400-digit answer stays a finite, comparable string.
    """
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "")
    if len(cleaned) > MAX_NUMBER_DIGITS:
        return None
    with localcontext() as context:
        context.prec = len(cleaned) + NUMBER_DECIMALS + 10
        try:
            value = Decimal(cleaned)
            if denominator is not None:
                divisor = Decimal(denominator.replace(",", ""))
                if divisor == 0:
                    return None
                value = value / divisor
            rounded = value.quantize(Decimal(1).scaleb(-NUMBER_DECIMALS))
        except (InvalidOperation, ValueError):
            return None
        if not rounded.is_finite():
            return None
        written = format(rounded.normalize(), "f")
    return "0" if written in ("-0", "0") else written


# --- options ----------------------------------------------------------------------------


def extract_option(text: str, *, prompt: str | None = None) -> str | None:
    """The chosen option letter, upper-case; limited to the prompt's options when it has some."""
    options = prompt_options(prompt) if prompt else {}
    allowed = "".join(options) or LETTERS
    for letter in option_letters(text):
        if letter in allowed:
            return letter
    return option_by_text(text, options)


def option_letters(text: str) -> list[str]:
    """Candidate letters, most explicit first: "answer is B", a leading "B)", "(B)", a lone "B"."""
    candidates: list[str] = []
    candidates.extend(reversed(_OPTION_MARKER.findall(text)))
    candidates.extend(reversed(_CORRECT_LETTER.findall(text)))
    leading = _LEADING_LETTER.search(text)
    if leading:
        candidates.append(leading.group(1))
    candidates.extend(reversed(_PAREN_LETTER.findall(text)))
    candidates.extend(reversed(_LONE_LETTER.findall(text)))
    return candidates


def prompt_options(prompt: str) -> dict[str, str]:
    """The last run of options ("A) text", "B. text", "(C) text") in `prompt`: letter → text."""
    runs: list[dict[str, str]] = []
    for match in _OPTION_LINE.finditer(prompt[-MAX_CHARS:]):
        letter, option = match.group(1).upper(), match.group(2).strip()
        if letter == "A" or not runs or letter in runs[-1] or chr(ord(letter) - 1) not in runs[-1]:
            runs.append({})
        runs[-1][letter] = option
    complete = [run for run in runs if "A" in run and len(run) >= 2]
    return complete[-1] if complete else {}


def option_by_text(text: str, options: dict[str, str]) -> str | None:
    """The one option whose text the answer quotes, or None when none or several match."""
    answer = normalised_span(text)
    if not answer:
        return None
    quoted = [
        letter
        for letter, option in options.items()
        if (span := normalised_span(option)) and f" {span} " in f" {answer} "
    ]
    return quoted[0] if len(quoted) == 1 else None


# --- dates ------------------------------------------------------------------------------


def extract_date(text: str) -> str | None:
    """The date right after the last answer marker, else the last date written, as MM/DD/YYYY."""
    marked = re.split(_MARKER, text, flags=re.IGNORECASE)
    if len(marked) > 1:
        found = dates_in(marked[-1])
        if found:
            return found[0]
    found = dates_in(text)
    return found[-1] if found else None


def dates_in(text: str) -> list[str]:
    """Every date written in `text`, in order, normalised."""
    found: list[tuple[int, str]] = []
    for form, pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            date = date_from(form, match.groups())
            if date is not None:
                found.append((match.start(), date))
    return [date for _, date in sorted(found)]


def date_from(form: str, parts: Sequence[str]) -> str | None:
    if form == "mdy":
        month, day, year = int(parts[0]), int(parts[1]), int(parts[2])
        if month > 12 >= day:  # written day first: 25/12/2021
            month, day = day, month
    elif form == "ymd":
        year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
    elif form == "month_day_year":
        month, day, year = _MONTHS[parts[0].lower()], int(parts[1]), int(parts[2])
    else:
        day, month, year = int(parts[0]), _MONTHS[parts[1].lower()], int(parts[2])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{month:02d}/{day:02d}/{year:04d}"


# --- yes/no and spans -------------------------------------------------------------------


def extract_yes_no(text: str) -> str | None:
    """ "yes" or "no": after an answer marker, as the first word, or alone on the last line."""
    marked = _YES_NO_MARKER.findall(text)
    if marked:
        return str(marked[-1]).lower()
    for pattern, target in ((_LEADING_YES_NO, text), (_LAST_LINE_YES_NO, last_line(text))):
        match = pattern.search(target)
        if match:
            return match.group(1).lower()
    return None


def extract_span(text: str) -> str | None:
    """A short answer: what follows the last answer marker, or the whole text when it is short."""
    marked = _SPAN_MARKER.findall(text)
    candidate = marked[-1] if marked else text
    span = normalised_span(candidate)
    if not span or len(span.split()) > MAX_SPAN_WORDS:
        return None
    return span


def normalised_span(text: str) -> str:
    """Lower-case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    lowered = _NON_WORD.sub(" ", text.lower()[:MAX_CHARS])
    return _SPACES.sub(" ", _ARTICLES.sub(" ", lowered)).strip()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
