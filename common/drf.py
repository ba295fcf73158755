"""REST defaults shared by every app's management API: permissions, 409 on protected deletes."""

from __future__ import annotations

from django.db.models import Model, ProtectedError
from rest_framework import exceptions, status
from rest_framework.permissions import DjangoModelPermissions

VIEW_PERMISSION = "%(app_label)s.view_%(model_name)s"


class ViewModelPermissions(DjangoModelPermissions):
    """DRF's model permissions, plus the `view` permission for reads (DRF asks for none)."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": [VIEW_PERMISSION], "HEAD": [VIEW_PERMISSION]}


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
