"""Generated bad input against the routing API and the management API's lists: never a 5xx.

Hypothesis builds valid-ish JSON objects (wrong types, huge numbers, lone surrogates, NUL,
deep nesting, unknown fields) for `/v1/chat/completions` and `/v1/feedback`, sent through
the lean ASGI handler in this process, and query strings for the management lists. Every
answer must be below 500, and every 4xx from the routing API in OpenAI's error format (the
management API's in DRF's: a JSON object). Bounded: `EXAMPLES` (3,000) inputs in all, about 45 s;
derandomized when `CI` is set, so a failure there reproduces.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testing.factories import make_key, make_policy, replay_endpoints
from tests.routing.api.inprocess import bearer, call, is_openai_error

pytestmark = pytest.mark.django_db

CHAT_EXAMPLES = 1_500
FEEDBACK_EXAMPLES = 1_000
LIST_EXAMPLES = 500
EXAMPLES = CHAT_EXAMPLES + FEEDBACK_EXAMPLES + LIST_EXAMPLES

FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Strings that have broken gateways: lone surrogates, NUL, a long one, escapes, non-ASCII.
NASTY = st.sampled_from(["\udfff", "\ud800", "a\udc00b", "\x00", "T-\x00", "x" * 5_000, "é", "😀", "\\u0000", ""])
TEXT = st.one_of(st.text(max_size=20), NASTY)
HUGE = st.sampled_from([2**31, 2**31 - 1, 2**63, 2**63 - 1, 2**64, -(2**63) - 1, 10**300, -1, 0])
NUMBER = st.one_of(st.integers(), HUGE, st.floats(), st.sampled_from([1e308, -1e308, 1e-320]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)
ROLE = st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "developer"]), JSON)
PART = st.fixed_dictionaries({"type": st.one_of(st.just("text"), JSON), "text": st.one_of(TEXT, JSON)})
CONTENT = st.one_of(TEXT, st.lists(PART, max_size=2), JSON)
MESSAGE = st.one_of(st.fixed_dictionaries({"role": ROLE, "content": CONTENT}), JSON)
MESSAGES = st.one_of(st.lists(MESSAGE, min_size=1, max_size=3), JSON)
CHAT_FIELDS = {
    "model": st.one_of(st.just("fuzz"), TEXT, JSON),
    "messages": MESSAGES,
    "max_tokens": st.one_of(st.integers(min_value=1, max_value=64), HUGE, JSON),
    "max_completion_tokens": st.one_of(HUGE, JSON),
    "temperature": st.one_of(st.floats(), NUMBER, JSON),
    "user": st.one_of(TEXT, JSON),
    "metadata": st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, JSON), max_size=3), JSON),
    "n": st.one_of(st.sampled_from([1, True, False, 2, 1.0]), JSON),
    "stream": st.one_of(st.just(False), JSON),
    "stream_options": JSON,
    "logprobs": JSON,
    "unknown_field": JSON,
}
FEEDBACK_FIELDS = {
    "request_id": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: f"chatcmpl-{u.hex}"), TEXT, JSON),
    "label": st.one_of(st.sampled_from(["correct", "incorrect"]), TEXT, JSON),
    "score": st.one_of(st.floats(), NUMBER, JSON),
    "comment": st.one_of(TEXT, JSON),
    "source": st.one_of(st.just("feedback"), TEXT, JSON),
    "extra": JSON,
}
# Bodies no JSON encoder writes: nesting past the parser, integers past 4,300 digits, broken JSON.
RAW = st.sampled_from(
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"messages": ' + b"[" * 3_000 + b"]" * 3_000 + b"}",
        b'{"max_tokens": ' + b"9" * 4_301 + b"}",
        b'{"score": 1' + b"0" * 400 + b"}",
        b'{"temperature": NaN}',
        b'{"score": Infinity, "label": null}',
        b'{"user": "\xed\xbf\xbf"}',
        b'{"a": "\xff"}',
        b"",
        b"null",
        b'{"messages": [{"role": "user", "content": "hi"}]',
    ]
)


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[bytes]:
    objects = st.fixed_dictionaries({}, optional=fields).map(lambda d: json.dumps(d).encode())
    return st.one_of(objects, objects, objects, RAW, JSON.map(lambda v: json.dumps(v).encode()))


@pytest.fixture
def key() -> str:
    mixtral, gpt4 = replay_endpoints()
    _, plaintext = make_key(make_policy("fuzz", [(mixtral, 0.0), (gpt4, 1.0)]))
    return plaintext


def assert_answered(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert is_openai_error(body), body


def test_generated_chat_bodies_are_never_a_5xx(key):
    @settings(FUZZ, max_examples=CHAT_EXAMPLES)
    @given(body=bodies(CHAT_FIELDS))
    def check(body: bytes) -> None:
        assert_answered(*call("/v1/chat/completions", body, bearer(key)))

    check()


def test_generated_feedback_bodies_are_never_a_5xx(key):
    @settings(FUZZ, max_examples=FEEDBACK_EXAMPLES)
    @given(body=bodies(FEEDBACK_FIELDS))
    def check(body: bytes) -> None:
        assert_answered(*call("/v1/feedback", body, bearer(key)))

    check()


LISTS = [
    "/api/routing/model-endpoints/",
    "/api/routing/policies/",
    "/api/routing/request-records/",
    "/api/routing/quality-labels/",
    "/api/routing/shadow-evaluations/",
    "/api/routing/scorer-versions/",
    "/api/dashboard/rollups/",
    "/api/dashboard/alert-rules/",
    "/api/dashboard/alert-events/",
    "/api/dashboard/what-if/",
]
PARAMS = st.sampled_from(
    ["limit", "offset", "team", "app", "policy", "status", "escalated", "created_after", "created_before",
     "resolution", "since", "until", "days", "threshold", "scorer", "format", "ordering", "search", "x"]
)  # fmt: skip
DATETIME = st.builds(
    lambda d, h, m, sign: f"{d.isoformat()}T00:00:00{sign}{h:02d}:{m:02d}",
    st.dates(),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["+", "-"]),
)
VALUE = st.one_of(
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
    HUGE.map(str),
    DATETIME,
    st.sampled_from(["%00", "\x00", "-1", "1e400", "NaN", "²", "9" * 5_000, "true", "maybe"]),
)


@pytest.fixture
def unthrottled(monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)


def test_generated_list_query_strings_are_never_a_5xx(api, unthrottled):
    @settings(FUZZ, max_examples=LIST_EXAMPLES)
    @given(url=st.sampled_from(LISTS), query=st.lists(st.tuples(PARAMS, VALUE), max_size=4))
    def check(url: str, query: list[tuple[str, str]]) -> None:
        qs = "&".join(f"{quote(name)}={quote(value, safe='%')}" for name, value in query)
        response = api.get(f"{url}?{qs}", HTTP_ACCEPT="application/json")
        assert response.status_code < 500, (url, qs, response.content[:500])
        if response.status_code >= 400:
            assert isinstance(response.json(), dict)

    check()


def test_the_suite_runs_thousands_of_inputs():
    assert EXAMPLES >= 3_000
