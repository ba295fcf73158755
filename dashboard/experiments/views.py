"""The experiment comparison page, and its one action: end the experiment and promote an arm."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.experiments.selectors import experiment_comparison
from routing.choices import ExperimentStatus
from routing.experiments.services import experiment_end
from routing.models import Experiment

VIEW_EXPERIMENTS = "routing.view_experiment"
CHANGE_EXPERIMENTS = "routing.change_experiment"


@login_required
@permission_required(VIEW_EXPERIMENTS, raise_exception=True)
def experiment_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Both (or all) arms side by side, with intervals and whether each has its minimum sample."""
    experiment = get_object_or_404(Experiment, pk=pk)
    context = {
        "experiment": experiment,
        "arms": experiment_comparison(experiment=experiment),
        "running": experiment.status == ExperimentStatus.RUNNING,
        "may_end": request.user.has_perm(CHANGE_EXPERIMENTS),
    }
    return render(request, "dashboard/experiment.html", context)


@require_POST
@login_required
@permission_required(CHANGE_EXPERIMENTS, raise_exception=True)
def experiment_end_view(request: HttpRequest, pk: int) -> HttpResponse:
    """End the experiment; the arm posted as `winner` (if any) becomes its keys' policy."""
    experiment = get_object_or_404(Experiment, pk=pk, status=ExperimentStatus.RUNNING)
    winner_id = request.POST.get("winner", "")
    winner = get_object_or_404(experiment.arms, pk=int(winner_id)) if winner_id.isdigit() else None
    experiment_end(experiment=experiment, winner=winner)
    return redirect("dashboard:experiment", pk=experiment.pk)
