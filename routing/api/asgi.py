"""A lean ASGI handler for the routing API.

Django's `ASGIHandler` serves every request of the project well, but on the routing API
three of its costs buy nothing and together took half the gateway's time per request
(`make bench`, profiled inside the server): the session/CSRF/auth/messages middleware,
each `MiddlewareMixin` hook of which runs in a thread hop; a `ThreadSensitiveContext` that
starts a thread per request for sync calls this path does not make; and the
`request_started`/`request_finished` signals, whose `close_old_connections` receiver is
two more thread hops. This handler keeps what the path needs from Django (URL resolving,
the view, exception-to-response conversion, body reading and response sending) and
cancels the view when the client disconnects.

Without `request_finished`, nothing closes stale database connections after a request;
the few database reads on this path (configuration reloads) call
`close_old_connections()` themselves (`routing.snapshots`).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix


class HotPathHandler(ASGIHandler):
    """Serves `/v1/…`: Django's request/response machinery without middleware or signals."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            await self._respond_unless_disconnected(request, receive, send)
        finally:
            body_file.close()

    async def _respond_unless_disconnected(self, request: Any, receive: Any, send: Any) -> None:
        view = asyncio.create_task(self.run_get_response(request))
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        await asyncio.wait((view, disconnect), return_when=asyncio.FIRST_COMPLETED)
        if view.done():
            disconnect.cancel()
            await self.send_response(view.result(), send)
            return
        # The client went away: cancelling the view cancels the cascade's upstream call.
        view.cancel()
        with suppress(asyncio.CancelledError):
            await view
        with suppress(RequestAborted):
            disconnect.result()
