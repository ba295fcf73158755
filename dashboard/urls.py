from django.urls import path

from dashboard.experiments import views as views_experiments
from dashboard.live import views
from dashboard.tuning import views as views_tuning

app_name = "dashboard"
urlpatterns = [
    path("", views.home, name="home"),
    path("data/", views.board_data, name="data"),
    path("policies/<int:policy_id>/", views.policy_board, name="policy"),
    path("policies/<int:policy_id>/data/", views.board_data, name="policy-data"),
    path("alerts/<int:event_id>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    # A/B experiments: the comparison of the arms, and ending one with its winner promoted.
    path("experiments/<int:pk>/", views_experiments.experiment_page, name="experiment"),
    path("experiments/<int:pk>/end/", views_experiments.experiment_end_view, name="experiment-end"),
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
]
