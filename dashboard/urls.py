from django.urls import path

from dashboard import navigation
from dashboard.experiments import views as views_experiments
from dashboard.live import views
from dashboard.requests import views as views_requests
from dashboard.tuning import views as views_tuning

app_name = "dashboard"
urlpatterns = [
    path("", views.home, name="home"),
    path("data/", views.board_data, name="data"),
    path("policies/<int:policy_id>/", views.policy_board, name="policy"),
    path("policies/<int:policy_id>/data/", views.board_data, name="policy-data"),
    path("alerts/<int:event_id>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    # Auto-tuning and what-if replay.
    path("tuning/", views_tuning.tuning, name="tuning"),
    path("tuning/proposals/<int:pk>/apply/", views_tuning.proposal_decide, {"action": "apply"}, name="tuning-apply"),
    path("tuning/proposals/<int:pk>/reject/", views_tuning.proposal_decide, {"action": "reject"}, name="tuning-reject"),
    path(
        "tuning/proposals/<int:pk>/rollback/",
        views_tuning.proposal_decide,
        {"action": "rollback"},
        name="tuning-rollback",
    ),
    path("tuning/policies/<int:pk>/what-if/", views_tuning.what_if, name="what-if"),
    path("tuning/what-if/", views_tuning.what_if_index, name="what-if-index"),
    # The request log.
    path("requests/", views_requests.request_log, name="requests"),
    path("requests/<uuid:record_id>/", views_requests.request_detail, name="request"),
    # A/B experiments: the comparison of the arms, and ending one with its winner promoted.
    path("experiments/<int:pk>/", views_experiments.experiment_page, name="experiment"),
    path("experiments/<int:pk>/end/", views_experiments.experiment_end_view, name="experiment-end"),
    # Where signing in leads when no page was asked for.
    path("welcome/", navigation.landing, name="landing"),
]
