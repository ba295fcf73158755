"""Top-level URLs: the routing API, /metrics, the management API, the admin, finance and the dashboard."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from routing.api.openai import embeddings, feedback
from routing.api.openai import views as hotpath
from routing.api.prometheus import metrics_view

urlpatterns = [
    path("v1/chat/completions", hotpath.chat_completions, name="chat-completions"),
    path("v1/models", hotpath.list_models, name="models"),
    path("v1/embeddings", embeddings.embeddings, name="embeddings"),
    path("v1/feedback", feedback.feedback, name="feedback"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Split: its start-up script is a file of its own, which the Content-Security-Policy allows.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/routing/", include("routing.api.rest.urls")),
    path("api/dashboard/", include("dashboard.api.urls")),
    path("api/billing/", include("billing.api.urls")),
    path("api/audit/", include("common.audit.urls")),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("finance/", include("billing.reports.urls")),
    path("audit/", include("common.audit.pages")),
    path("", include("dashboard.urls")),
]
