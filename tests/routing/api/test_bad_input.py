"""Bad input from a security review: each is a 4xx naming the field, never a 500.

The routing API answers in OpenAI's error format; the management API in DRF's.
"""

from __future__ import annotations

import json
import uuid

import pytest

from routing.api.openai.parsing import MAX_TOKENS
from testing.factories import make_key, make_policy, replay_endpoints
from tests.routing.api.inprocess import bearer, call, is_openai_error

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
FEEDBACK = "/v1/feedback"


@pytest.fixture
def key() -> str:
    mixtral, gpt4 = replay_endpoints()
    _, plaintext = make_key(make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)]))
    return plaintext


def chat(**fields: object) -> dict[str, object]:
    return {"model": "demo", "messages": [{"role": "user", "content": "Hi"}], **fields}


def refused(status: int, body: object, expected: int = 400, param: str | None = None) -> None:
    assert status == expected, body
    assert is_openai_error(body), body
    if param is not None:
        assert body["error"]["param"] == param, body  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(messages=[{"role": ["user"], "content": "Hi"}]), "messages[0].role"),
        (chat(messages=[{"role": {"a": 1}, "content": "Hi"}]), "messages[0].role"),
        (chat(user="\udfff"), "user"),
        (chat(metadata={"\udfff": "x"}), "metadata"),
        (chat(metadata={"ticket": "T-\udfff"}), "metadata.ticket"),
        (chat(messages=[{"role": "user", "content": "2 + \udfff"}]), "messages[0].content"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]),
            "messages[0].content[0].text",
        ),
        (chat(model="demo\udfff"), "model"),
        (chat(max_tokens=2**31), "max_tokens"),
        (chat(max_tokens=2**63), "max_tokens"),
        (chat(max_completion_tokens=MAX_TOKENS + 1), "max_completion_tokens"),
        (chat(n=True), "n"),
    ],
)
def test_a_bad_chat_field_is_a_400_naming_it(key, body, param):
    refused(*call(CHAT, json.dumps(body).encode(), bearer(key)), param=param)


def test_the_largest_max_tokens_is_accepted(key):
    status, body = call(CHAT, json.dumps(chat(max_tokens=MAX_TOKENS)).encode(), bearer(key))
    assert status == 200, body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError in the parser
        b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}",  # parsed, but deeper than any request
        b'{"max_tokens": ' + b"9" * 5_000 + b"}",  # ValueError: over 4,300 digits
    ],
)
def test_deep_nesting_and_huge_integers_are_a_400(key, raw):
    refused(*call(CHAT, raw, bearer(key)))


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer KEY"), (b"authorization", b"Bearer KEY")],
        [(b"authorization", b"Bearer\tKEY")],
        [(b"authorization", b"Bearer KEY, Bearer other")],
        [(b"authorization", b"Bearer  KEY")],
    ],
)
def test_a_loose_authorization_header_is_a_401_even_around_a_good_key(key, headers):
    headers = [(name, value.replace(b"KEY", key.encode())) for name, value in headers]
    refused(*call(CHAT, json.dumps(chat()).encode(), headers), expected=401)


@pytest.mark.parametrize(("label", "param"), [(["correct"], "label"), ({"a": 1}, "label"), ("\udfff", "label")])
def test_a_feedback_label_that_is_not_a_string_is_a_400(key, label, param):
    body = {"request_id": str(uuid.uuid4()), "label": label}
    refused(*call(FEEDBACK, json.dumps(body).encode(), bearer(key)), param=param)


def test_a_lone_surrogate_in_a_feedback_comment_is_a_400(key):
    body = {"request_id": str(uuid.uuid4()), "label": "correct", "comment": "\udfff"}
    refused(*call(FEEDBACK, json.dumps(body).encode(), bearer(key)), param="comment")


# --- the management API ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/routing/request-records/?team=a%00b", "team"),
        ("/api/routing/request-records/?policy=%00", "policy"),
        ("/api/routing/request-records/?created_after=2025-01-01T00:00:00%2B16:00", "created_after"),
        ("/api/routing/request-records/?created_before=2025-01-01T00:00:00-23:59", "created_before"),
        ("/api/dashboard/rollups/?since=2025-01-01T00:00:00%2B20:00", "since"),
        ("/api/dashboard/rollups/?policy=x%00", "policy"),
        (f"/api/routing/request-records/?limit={2**63}", "limit"),
        (f"/api/routing/model-endpoints/?offset={2**63}", "offset"),
        ("/api/routing/policies/?limit=0", "limit"),
    ],
)
def test_a_management_filter_the_database_cannot_take_is_a_400(api, url, param):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert param in response.json()


def endpoint_body(**fields: object) -> dict[str, object]:
    return {
        "name": "fuzzed",
        "provider_kind": "openai_compat",
        "model_id": "m",
        "input_price_per_m": "1",
        "output_price_per_m": "1",
        **fields,
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"read_timeout_s": 1e308}', "read_timeout_s"),
        ('{"connect_timeout_s": 3601}', "connect_timeout_s"),
        ('{"read_timeout_s": 1e400}', "read_timeout_s"),
        ('{"quality_prior": 1e400}', "quality_prior"),
        ('{"temperature": -1e400}', "temperature"),
    ],
)
def test_a_model_endpoint_timeout_or_float_out_of_bounds_is_a_400(api, raw, field):
    body = json.dumps(endpoint_body()).removesuffix("}") + ", " + raw.removeprefix("{")
    response = api.generic("POST", "/api/routing/model-endpoints/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "nan"])
def test_nan_and_infinity_in_a_float_field_are_a_400(api, value):
    response = api.post("/api/routing/model-endpoints/", endpoint_body(read_timeout_s=value), format="multipart")
    assert response.status_code == 400, response.content
    assert "read_timeout_s" in response.json()
    raw = json.dumps(endpoint_body()).replace("}", f', "quality_prior": {value}}}')
    response = api.generic("POST", "/api/routing/model-endpoints/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
