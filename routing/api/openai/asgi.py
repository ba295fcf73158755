"""A lean ASGI handler for the routing API (`/v1/…`) and `/metrics`.

Django's `ASGIHandler` costs more per request than the rest of the gateway: middleware thread
hops, request signals, a spooled body, the URL resolver. This handler reads the body into
bytes, hands the view a lazily built `ApiRequest`, finds the view by exact path, and sends
one start and one body message with a Content-Length. The view runs in the request's task,
cancelled if the client goes away. See docs/hotpath.md.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from contextlib import aclosing
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted, RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import Resolver404, resolve
from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.functional import cached_property
from django.utils.log import log_response

from common import redis as shared_redis
from routing.api.openai.format import error_response
from routing.api.openai.sse import EventStreamResponse
from routing.exceptions import ApiError, InternalError

logger = logging.getLogger(__name__)
# Set on every answer while this worker skips an unreachable Redis.
REDIS_DOWN_HEADER = "x-cascadeops-redis"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Response = HttpResponse | StreamingHttpResponse
View = Callable[[HttpRequest], Awaitable[Response]]


class UnknownUrl(ApiError):
    status = 404
    code = "unknown_url"


def _built_by_django(name: str) -> Any:
    """An attribute of Django's own request for the same scope, built on first use."""
    return property(lambda request: getattr(request.django_request, name))


class ApiRequest(HttpRequest):
    """An `HttpRequest` that builds only what a routing API view reads.

    The views read the method, a few headers and the body (`routing.api.openai.views`). `META`,
    `GET`, `POST`, `COOKIES` and the rest are those of Django's `ASGIRequest`, built when
    first read: Django's request with its headers took about 25 µs, this one takes 5.
    """

    META = _built_by_django("META")
    GET = _built_by_django("GET")
    POST = _built_by_django("POST")
    FILES = _built_by_django("FILES")
    COOKIES = _built_by_django("COOKIES")
    content_type = _built_by_django("content_type")
    content_params = _built_by_django("content_params")
    _stream = _built_by_django("_stream")

    def __init__(self, scope: Scope, body: bytes | None) -> None:
        # Not HttpRequest.__init__: it builds up front what the properties above build late.
        self.scope = scope
        self.method = scope["method"].upper()
        self.path = self.path_info = scope["path"]
        self.resolver_match = None
        self._whole_body = body

    @cached_property
    def headers(self) -> CaseInsensitiveMapping[str]:  # type: ignore[override]
        """By name in any case; a repeated header's values joined with commas, as Django does."""
        joined: dict[str, str] = {}
        for raw_name, raw_value in self.scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            # As Django: `x_api_key` must not pass for `x-api-key`.
            if "_" in name:
                continue
            value = raw_value.decode("latin-1")
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        return CaseInsensitiveMapping(joined)

    @property
    def body(self) -> bytes:
        if self._whole_body is None:
            raise RequestDataTooBig("The request body is larger than CASCADEOPS_MAX_REQUEST_BYTES.")
        return self._whole_body

    @cached_property
    def django_request(self) -> ASGIRequest:
        return ASGIRequest(self.scope, io.BytesIO(self._whole_body or b""))

    def _get_scheme(self) -> str:
        return str(self.scope.get("scheme") or "http")


class HotPathHandler:
    """Serves `/v1/…` and `/metrics`: each view by exact path, without middleware or signals."""

    def __init__(self) -> None:
        self._views: dict[str, View] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            body = await read_body(receive, settings.CASCADEOPS_MAX_REQUEST_BYTES)
        except RequestAborted:
            return
        try:
            request = ApiRequest(scope, body)
            await self._respond_unless_disconnected(request, receive, send_noting_start)
        except Exception:
            if response_started:
                raise  # the server ends the connection: the response cannot be taken back
            logger.exception("The routing API's handler failed on %s %s", scope["method"], scope["path"])
            await send_response(internal_error(), send)

    async def _respond_unless_disconnected(self, request: ApiRequest, receive: Receive, send: Send) -> None:
        """Respond in this task, which the client's disconnect cancels.

        Not in a task of its own, as Django's handler does: that took about 20 of the
        handler's 90 µs per request.
        """
        this = asyncio.current_task()
        assert this is not None
        race = DisconnectRace(this)
        client_gone = asyncio.create_task(disconnected(receive))
        client_gone.add_done_callback(race.client_gone)
        try:
            await self._respond(request, send)
        except asyncio.CancelledError:
            if not race.cancelled_by_client():
                raise
        finally:
            race.over()
            client_gone.cancel()

    async def _respond(self, request: ApiRequest, send: Send) -> None:
        response = await self._response_to(request)
        try:
            await send_response(response, send)
        finally:
            if isinstance(response, EventStreamResponse):
                await response.aclose()

    async def _response_to(self, request: ApiRequest) -> Response:
        view = self._view_for(request.path)
        if view is None:
            response: Response = error_response(UnknownUrl(f"Invalid URL ({request.method} {request.path})"))
        else:
            try:
                response = await view(request)
            except Exception:
                # The views answer their own errors; this one is a bug.
                logger.exception("Unhandled error in the view for %s %s", request.method, request.path)
                response = internal_error()
        if settings.REDIS_URL and shared_redis.is_down():
            response[REDIS_DOWN_HEADER] = "down"  # docs/redis-outage.md: what degrades meanwhile
        if response.status_code >= 400 and isinstance(response, HttpResponse):
            # As Django's handler logs it, without its thread hop: a few microseconds.
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

    def _view_for(self, path: str) -> View | None:
        """The view Django's URLconf names for `path`; resolved once for each path it knows."""
        view = self._views.get(path)
        if view is not None:
            return view
        try:
            match = resolve(path)
        except Resolver404:
            return None
        func = match.func if iscoroutinefunction(match.func) else sync_to_async(match.func)
        if match.args or match.kwargs:
            # Not kept: the table would grow with every value a client puts in the path.
            return functools.partial(func, *match.args, **match.kwargs)
        self._views[path] = func
        return func


class DisconnectRace:
    """Cancels the task serving a request when its client goes away, until `over()`.

    Cancelling the view (or the stream being sent) cancels the cascade's upstream call.
    After a whole response the server reports a disconnect too; by then the race is over
    and nothing is cancelled.
    """

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelled = False
        self.finished = False

    def client_gone(self, listener: asyncio.Task[None]) -> None:
        if not (self.finished or listener.cancelled()):
            self.cancelled = self.task.cancel()

    def cancelled_by_client(self) -> bool:
        """Whether the client alone cancelled the task; call it where the cancellation ends.

        The server's cancellation (its graceful shutdown is over) must go on, even when
        the client's came too: the view was cancelled the same way and recorded that.
        """
        return self.cancelled and self.task.uncancel() == 0

    def over(self) -> None:
        self.finished = True


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body; None when it is longer than `limit` (the rest is left unread).

    Raises `RequestAborted` when the client disconnects first.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


async def disconnected(receive: Receive) -> None:
    """Returns when the client disconnects; discards what is left of an unread body."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_response(response: Response, send: Send) -> None:
    """`response` as ASGI messages: the start with its length, then the body in one message.

    A streamed response goes chunk by chunk, ending with an empty message.
    """
    if isinstance(response, HttpResponse):
        body = response.content
        await send(start_message(response, content_length=len(body)))
        await send({"type": "http.response.body", "body": body})
        return
    await send(start_message(response))
    # Django's iteration, which also serves a response made from a sync iterator.
    chunks = cast(AsyncGenerator[bytes, None], aiter(response))
    async with aclosing(chunks):
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body"})


def start_message(response: Response, content_length: int | None = None) -> Message:
    # Django checked the headers when they were set: names are ASCII, values Latin-1.
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    if content_length is not None and not response.has_header("Content-Length"):
        headers.append((b"Content-Length", b"%d" % content_length))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def internal_error() -> Response:
    return error_response(InternalError("The gateway failed to handle this request; it has been logged."))
