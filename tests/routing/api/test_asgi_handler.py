"""The routing API's lean ASGI handler: what it sends, what it cancels, what its views get.

Driven over ASGI itself (asgiref's `ApplicationCommunicator`) with the views below, served
by exact path as the real ones are; and once through uvicorn with a real chat completion.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from routing.api.openai import format as response_format
from routing.api.openai import views as hotpath
from routing.api.openai.asgi import ApiRequest, HotPathHandler
from routing.exceptions import ApiError
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints

BIG = 64


class Parking:
    """What `parked` saw: that it started, and how it ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False


parking = Parking()


async def answer(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"method": request.method, "tier": 0}, headers={"x-cascadeops-tier": "0"})


async def echo_body(request: HttpRequest) -> HttpResponse:
    try:
        return JsonResponse({"bytes": len(hotpath.read_body(request))})
    except ApiError as exc:
        return response_format.error_response(exc)


async def parked(request: HttpRequest) -> HttpResponse:
    parking.started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        parking.cancelled = True
        raise
    raise AssertionError("unreachable")


async def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


async def not_a_response(request: HttpRequest) -> Any:
    return None  # a bug the handler itself trips over


async def events(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> Any:
        for n in range(3):
            yield f"data: {n}\n\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/event-stream")


urlpatterns = [
    path("v1/answer", answer),
    path("v1/echo", echo_body),
    path("v1/parked", parked),
    path("v1/broken", broken),
    path("v1/not-a-response", not_a_response),
    path("v1/events", events),
]


@pytest.fixture(autouse=True)
def fresh_parking() -> None:
    global parking
    parking = Parking()


def http_scope(route: str, *, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers if headers is not None else [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def started(route: str, **scope: Any) -> ApplicationCommunicator:
    return ApplicationCommunicator(HotPathHandler(), http_scope(route, **scope))


async def exchange(route: str, body: bytes = b"", **scope: Any) -> list[dict[str, Any]]:
    """Every message the handler sends for one request, until it returns."""
    app = started(route, **scope)
    await app.send_input({"type": "http.request", "body": body})
    messages = [await app.receive_output()]
    while messages[-1]["type"] != "http.response.body" or messages[-1].get("more_body"):
        messages.append(await app.receive_output())
    await app.send_input({"type": "http.disconnect"})  # as the server does after the response
    await app.wait()
    return messages


def headers_of(start: dict[str, Any]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in start["headers"]}


def error_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert headers_of(messages[0])[b"content-type"] == b"application/json"
    return json.loads(b"".join(m.get("body", b"") for m in messages[1:]))["error"]


@pytest.mark.urls(__name__)
async def test_a_whole_answer_is_one_start_with_its_length_and_one_body():
    start, body = await exchange("/v1/answer")

    assert start["status"] == 200
    assert headers_of(start)[b"content-length"] == str(len(body["body"])).encode()
    assert headers_of(start)[b"x-cascadeops-tier"] == b"0"
    assert not body.get("more_body")
    assert json.loads(body["body"]) == {"method": "POST", "tier": 0}


@pytest.mark.urls(__name__)
async def test_a_streamed_answer_is_sent_chunk_by_chunk_without_a_length():
    start, *chunks, end = await exchange("/v1/events")

    assert b"content-length" not in headers_of(start)
    assert [c["body"] for c in chunks] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert all(c["more_body"] for c in chunks)
    assert end.get("body", b"") == b"" and not end.get("more_body")


@pytest.mark.urls(__name__)
async def test_a_body_sent_in_pieces_reaches_the_view_whole():
    app = started("/v1/echo")
    for piece in (b"ab", b"cd"):
        await app.send_input({"type": "http.request", "body": piece, "more_body": True})
    await app.send_input({"type": "http.request", "body": b"e"})

    start, body = await app.receive_output(), await app.receive_output()
    assert start["status"] == 200
    assert json.loads(body["body"]) == {"bytes": 5}
    await app.send_input({"type": "http.disconnect"})
    await app.wait()


@pytest.mark.urls(__name__)
async def test_a_body_over_the_limit_is_an_openai_413_before_the_client_has_sent_it_all(settings):
    settings.CASCADEOPS_MAX_REQUEST_BYTES = BIG
    app = started("/v1/echo")
    await app.send_input({"type": "http.request", "body": b"x" * (BIG + 1), "more_body": True})

    messages = [await app.receive_output(), await app.receive_output()]
    assert messages[0]["status"] == 413
    assert error_of(messages)["code"] == "request_too_large"
    # The rest of the body is read and dropped until the server reports the disconnect.
    await app.send_input({"type": "http.request", "body": b"x" * BIG, "more_body": True})
    await app.send_input({"type": "http.disconnect"})
    await app.wait()


@pytest.mark.urls(__name__)
async def test_an_unknown_path_is_an_openai_404():
    messages = await exchange("/v1/nothing-here")

    assert messages[0]["status"] == 404
    assert error_of(messages) == {
        "message": "Invalid URL (POST /v1/nothing-here)",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("route", ["/v1/broken", "/v1/not-a-response"])
async def test_a_bug_in_a_view_or_the_handler_is_an_openai_500(route):
    messages = await exchange(route)

    assert messages[0]["status"] == 500
    assert error_of(messages)["type"] == "server_error"


@pytest.mark.urls(__name__)
async def test_a_client_that_goes_away_cancels_the_view_and_is_sent_nothing():
    app = started("/v1/parked")
    await app.send_input({"type": "http.request", "body": b"{}"})
    await parking.started.wait()

    await app.send_input({"type": "http.disconnect"})
    await app.wait()

    assert parking.cancelled
    assert app.future.done() and not app.future.cancelled()  # the handler ends the request itself
    assert await app.receive_nothing()


@pytest.mark.urls(__name__)
async def test_the_servers_cancellation_reaches_the_view_and_goes_on():
    app = started("/v1/parked")
    await app.send_input({"type": "http.request", "body": b"{}"})
    await parking.started.wait()

    app.future.cancel()  # what uvicorn does when its graceful shutdown is over
    await app.wait()

    assert parking.cancelled
    assert app.future.cancelled()


@pytest.mark.urls(__name__)
async def test_a_client_that_goes_away_while_sending_the_body_never_reaches_a_view():
    app = started("/v1/parked")
    await app.send_input({"type": "http.request", "body": b"{", "more_body": True})
    await app.send_input({"type": "http.disconnect"})
    await app.wait()

    assert not parking.started.is_set()
    assert await app.receive_nothing()


def test_the_request_a_view_gets_reads_as_djangos_own():
    headers = [
        (b"host", b"testserver:8000"),
        (b"authorization", b"Bearer sk-abc"),
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"x-cascadeops-cache", b"no-store"),
        (b"cache-control", b"no-cache"),
        (b"cache-control", b"max-age=0"),
        (b"x_cascadeops_cache", b"spoofed"),  # an underscore must not pass for a dash
    ]
    scope = {**http_scope("/v1/chat/completions", method="post", headers=headers), "query_string": b"a=1&b=2"}
    ours, django = ApiRequest(scope, b"{}"), ASGIRequest(scope, io.BytesIO(b"{}"))

    assert isinstance(ours, HttpRequest)
    assert (ours.method, ours.path, ours.path_info, ours.body) == (django.method, django.path, django.path_info, b"{}")
    for name in ("Authorization", "content-length", "X-CascadeOps-Cache", "Cache-Control", "Host", "Missing"):
        assert ours.headers.get(name) == django.headers.get(name), name
    assert ours.META == django.META
    assert ours.GET == django.GET
    assert (ours.content_type, ours.scheme, ours.get_host()) == (django.content_type, "http", "testserver:8000")


def test_a_body_over_the_limit_cannot_be_read_and_says_so():
    request = ApiRequest(http_scope("/v1/echo"), None)

    with pytest.raises(ApiError) as refused:
        hotpath.read_body(request)
    assert refused.value.status == 413


@pytest.mark.live
def test_through_uvicorn_a_chat_completion_has_a_length_and_unknown_urls_are_json(live_gateway):
    mixtral, _ = replay_endpoints()
    _, key = make_key(make_policy("lean-handler", [(mixtral, 0.0)]))
    prompt = replay_prompts()[0]
    body = {"model": "lean-handler", "messages": [{"role": "user", "content": prompt}]}
    auth = {"Authorization": f"Bearer {key}"}

    answered = httpx.post(f"{live_gateway.url}/v1/chat/completions", json=body, headers=auth)
    unknown = httpx.post(f"{live_gateway.url}/v1/chat/complete", json=body, headers=auth)

    assert answered.status_code == 200, answered.text
    assert answered.headers["content-length"] == str(len(answered.content))
    assert "transfer-encoding" not in answered.headers
    assert answered.json()["object"] == "chat.completion"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
