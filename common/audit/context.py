"""Who is making a change, and from where: read when an audit entry is written.

An HTTP request (the admin, the management API, the dashboard's pages) is remembered by
`AuditMiddleware`, and its user is read only when an entry is written, because the REST
API authenticates tokens in the view, after the middleware. Background jobs set their
actor in `common.audit.receivers`; anything else run by `manage.py` is that command.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from django.http import HttpRequest, HttpResponse

from common.audit.choices import AuditSource

MANAGE_PROGRAMS = ("manage.py", "django-admin")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who: a user name, a job's name or a command line; from where: the source and an address."""

    name: str
    source: str
    address: str | None = None


_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)
_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
_action: ContextVar[str | None] = ContextVar("audit_action", default=None)
_untracked: ContextVar[bool] = ContextVar("audit_untracked", default=False)


def current_actor() -> Actor:
    actor = _actor.get()
    if actor is not None:
        return actor
    request = _request.get()
    return request_actor(request) if request is not None else process_actor()


def current_action(default: str) -> str:
    """The action a service named (`audit_action`), else `default` (create, update, delete)."""
    return _action.get() or default


def request_actor(request: HttpRequest) -> Actor:
    user = getattr(request, "user", None)
    name = user.get_username() if user is not None and user.is_authenticated else ""
    return Actor(name=name, source=_request_source(request.path), address=request.META.get("REMOTE_ADDR") or None)


def _request_source(path: str) -> str:
    if path.startswith("/admin/"):
        return AuditSource.ADMIN
    return AuditSource.API if path.startswith("/api/") else AuditSource.WEB


def process_actor() -> Actor:
    """Outside a request and a job: the management command this process runs, or the system."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    if program in MANAGE_PROGRAMS and len(sys.argv) > 1:
        return Actor(name=f"{sys.argv[1]} ({_os_user()})", source=AuditSource.COMMAND)
    return Actor(name=_os_user(), source=AuditSource.SYSTEM)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return os.environ.get("USER", "")


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@contextmanager
def audit_action(action: str) -> Iterator[None]:
    """Name the changes made inside (revoke, restore, apply) instead of create/update/delete."""
    token = _action.set(action)
    try:
        yield
    finally:
        _action.reset(token)


@contextmanager
def audit_untracked() -> Iterator[None]:
    """Tracked rows saved inside write no entry of their own: the service writes one for the whole change."""
    token = _untracked.set(True)
    try:
        yield
    finally:
        _untracked.reset(token)


def tracking() -> bool:
    return not _untracked.get()


class AuditMiddleware:
    """Remembers the request for the audit entries its view writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
