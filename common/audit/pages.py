"""The audit trail's page, mounted at /audit/ (its API is `common.audit.urls`, at /api/audit/)."""

from django.urls import path

from common.audit import views

app_name = "audit"
urlpatterns = [
    path("", views.audit_list, name="list"),
]
