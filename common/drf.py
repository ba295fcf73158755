"""REST defaults shared by every app's management API: permissions, 409 on protected deletes, bounded pages."""

from __future__ import annotations

from django.db.models import Model, ProtectedError
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request

VIEW_PERMISSION = "%(app_label)s.view_%(model_name)s"


class ViewModelPermissions(DjangoModelPermissions):
    """DRF's model permissions, plus the `view` permission for reads (DRF asks for none)."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": [VIEW_PERMISSION], "HEAD": [VIEW_PERMISSION]}


class ChangeModelPermissions(ViewModelPermissions):
    """For actions that change an existing row by POST (revoke, restore): the `change` permission."""

    perms_map = {**ViewModelPermissions.perms_map, "POST": DjangoModelPermissions.perms_map["PUT"]}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is still in use."
    default_code = "conflict"


def destroy_unless_protected(instance: Model) -> None:
    """Delete `instance`, or answer 409 naming what still refers to it."""
    try:
        instance.delete()
    except ProtectedError as exc:
        used_by = ", ".join(sorted({str(obj) for obj in exc.protected_objects})[:10])
        raise Conflict(f"Cannot delete {instance}: still used by {used_by}.") from exc


# The largest page and the farthest offset a list answers; past them a 400 (a limit of
# 2**63 is an overflow in the database's LIMIT, a 500 before these bounds).
MAX_PAGE_LIMIT = 1_000
MAX_PAGE_OFFSET = 2**31 - 1


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's `limit`/`offset` pages, a non-integer or out-of-bounds value answered with 400."""

    max_limit = MAX_PAGE_LIMIT

    def get_limit(self, request: Request) -> int | None:
        if self.limit_query_param in request.query_params:
            return _bounded(request, self.limit_query_param, 1, MAX_PAGE_LIMIT)
        return self.default_limit

    def get_offset(self, request: Request) -> int:
        if self.offset_query_param in request.query_params:
            return _bounded(request, self.offset_query_param, 0, MAX_PAGE_OFFSET)
        return 0


def _bounded(request: Request, name: str, low: int, high: int) -> int:
    raw = request.query_params[name]
    # isdecimal() and a length cap: int() takes "²" and refuses 4,300 digits.
    value = int(raw) if raw.isascii() and raw.isdecimal() and len(raw) <= 12 else -1
    if not low <= value <= high:
        raise exceptions.ValidationError({name: [f"Must be an integer from {low} to {high}."]})
    return value
