"""Admin base classes for rows the gateway writes itself, named by what they allow."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ViewOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown, never added, edited or deleted by hand (ledger lines, audit rows)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewAndDeleteAdmin(ViewOnlyAdmin):
    """Shown and deletable (labels an operator may withdraw), never edited by hand."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super(ViewOnlyAdmin, self).has_delete_permission(request, obj)


class ViewAndActAdmin(ViewOnlyAdmin):
    """Fields read-only, but the change permission stands so the model's actions run."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super(ViewOnlyAdmin, self).has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super(ViewOnlyAdmin, self).has_delete_permission(request, obj)
