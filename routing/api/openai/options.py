"""Chat-completions parameters the providers get as sent: each one's type and range check.

A check returns the value to send (as given) or raises a 400 naming the parameter. The
parameters `ChatRequest` reads itself are in `parsing`; what each one does is in docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routing.exceptions import RequestInvalid

MAX_STOP_SEQUENCES = 4
MAX_LOGIT_BIAS = 300
MAX_TOP_LOGPROBS = 20
REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high"})
VERBOSITIES = frozenset({"low", "medium", "high"})
SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})


def _number(low: float, high: float) -> Callable[[Any, str], float | int]:
    def check(value: Any, name: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise RequestInvalid(f"'{name}' must be a number from {low:g} to {high:g}; got {value!r}.", param=name)
        return value

    return check


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestInvalid(f"'{name}' must be an integer; got {value!r}.", param=name)
    return value


def _boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestInvalid(f"'{name}' must be true or false; got {value!r}.", param=name)
    return value


def _one_of(allowed: frozenset[str]) -> Callable[[Any, str], str]:
    def check(value: Any, name: str) -> str:
        if value not in allowed:
            raise RequestInvalid(f"'{name}' must be one of {', '.join(sorted(allowed))}; got {value!r}.", param=name)
        return str(value)

    return check


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RequestInvalid(f"'{name}' must be a string; got {type(value).__name__}.", param=name)
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestInvalid(f"'{name}' must be an object.", param=name)
    return value


def _stop(value: Any, name: str) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in value):
        return value
    raise RequestInvalid(f"'{name}' must be a string or an array of at most {MAX_STOP_SEQUENCES} strings.", param=name)


def _top_logprobs(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise RequestInvalid(f"'{name}' must be an integer from 0 to {MAX_TOP_LOGPROBS}; got {value!r}.", param=name)
    return value


def _logit_bias(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise RequestInvalid(f"'{name}' must be an object of at most {MAX_LOGIT_BIAS} token ids.", param=name)
    for token, bias in value.items():
        ok_bias = not isinstance(bias, bool) and isinstance(bias, int | float) and -100 <= bias <= 100
        if not (token.isdigit() and ok_bias):
            raise RequestInvalid(
                f"'{name}' maps token ids (digits) to numbers from -100 to 100; got {token!r}: {bias!r}.",
                param=f"{name}.{token}",
            )
    return value


OPTION_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "stop": _stop,
    "seed": _integer,
    "top_p": _number(0, 1),
    "frequency_penalty": _number(-2, 2),
    "presence_penalty": _number(-2, 2),
    "logit_bias": _logit_bias,
    "top_logprobs": _top_logprobs,
    "parallel_tool_calls": _boolean,
    "reasoning_effort": _one_of(REASONING_EFFORTS),
    "verbosity": _one_of(VERBOSITIES),
    "service_tier": _one_of(SERVICE_TIERS),
    "store": _boolean,
    "prediction": _object,
    "web_search_options": _object,
    "prompt_cache_key": _string,
    "safety_identifier": _string,
}

# Documented parameters this gateway refuses, with why.
REFUSED_FIELDS: dict[str, str] = {
    "functions": "'functions' is the deprecated form of 'tools'; send the functions as 'tools' instead.",
    "function_call": "'function_call' is the deprecated form of 'tool_choice'; send 'tool_choice' instead.",
    "audio": "Audio output is not supported: the cascade judges text, tool calls and JSON.",
    "modalities": "'modalities' is not supported: the cascade answers in text only.",
}
