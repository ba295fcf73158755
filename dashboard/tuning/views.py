"""Operator pages for the quality loop: tuning proposals and what-if replay (JSON: `dashboard.tuning.api`).

The views parse, call one service and answer; the decisions are in `dashboard.tuning.proposals`
and `dashboard.tuning.whatif`. Deciding on a proposal takes the `decide_tuningproposal`
permission and a POST with a CSRF token.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from dashboard.models import TuningConfig, TuningProposal
from dashboard.tuning.forms import DEFAULT_DAYS, WhatIfForm
from dashboard.tuning.proposals import (
    ProposalNotOpen,
    ProposalStale,
    shadow_spend,
    tuning_proposal_apply,
    tuning_proposal_reject,
    tuning_proposal_rollback,
)
from dashboard.tuning.whatif import whatif_figure, whatif_replay
from routing.models import Policy
from routing.quality.learning import CURVE_HEIGHT, CURVE_WIDTH, learning_curves

PROPOSALS_SHOWN = 50
SHADOW_SPEND_DAYS = 30
VIEW_RECORDS = "routing.view_requestrecord"
DECISIONS = {
    "apply": (tuning_proposal_apply, "Applied"),
    "reject": (tuning_proposal_reject, "Rejected"),
    "rollback": (tuning_proposal_rollback, "Rolled back"),
}


@login_required
@permission_required("dashboard.view_tuningproposal", raise_exception=True)
def tuning(request: HttpRequest) -> HttpResponse:
    """Tuned policies, and every proposal with its evidence and the buttons to decide it."""
    spend = shadow_spend(since=timezone.now() - timedelta(days=SHADOW_SPEND_DAYS))
    configs = list(TuningConfig.objects.select_related("policy"))
    for config in configs:
        config.shadow_spend = spend.get(config.policy_id, Decimal(0))  # type: ignore[attr-defined]
    proposals = TuningProposal.objects.select_related("policy", "decided_by", "rolled_back_by", "scorer_version_after")[
        :PROPOSALS_SHOWN
    ]
    context = {
        "configs": configs,
        "proposals": proposals,
        "shadow_spend_days": SHADOW_SPEND_DAYS,
        "can_decide": request.user.has_perm("dashboard.decide_tuningproposal"),
        "learning_curves": learning_curves(),
        "curve_size": (CURVE_WIDTH, CURVE_HEIGHT),
    }
    return render(request, "dashboard/tuning/list.html", context)


@require_POST
@login_required
@permission_required("dashboard.decide_tuningproposal", raise_exception=True)
def proposal_decide(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Apply, reject or roll back one proposal; the page says what happened."""
    proposal = get_object_or_404(TuningProposal.objects.select_related("policy"), pk=pk)
    decide, done = DECISIONS[action]
    try:
        decide(proposal=proposal, user=request.user)
    except (ProposalNotOpen, ProposalStale) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{done}: {proposal}.")
    return redirect("dashboard:tuning")


@login_required
@permission_required(VIEW_RECORDS, raise_exception=True)
def what_if(request: HttpRequest, pk: int) -> HttpResponse:
    """Replay a policy's recent labelled traffic under a candidate; the sweep as a chart."""
    policy = get_object_or_404(Policy, pk=pk)
    form = WhatIfForm(request.GET or {"days": DEFAULT_DAYS}, policy=policy)
    report = None
    if form.is_valid():
        report = whatif_replay(policy=policy, since=form.since(), candidate=form.candidate())
    context = {
        "policy": policy,
        "form": form,
        "report": report,
        "figure": whatif_figure(report) if report and report["sweep"] else None,
    }
    return render(request, "dashboard/tuning/what_if.html", context)


@login_required
@permission_required(VIEW_RECORDS, raise_exception=True)
def what_if_index(request: HttpRequest) -> HttpResponse:
    """Which policy to replay: every policy, each linked to its what-if page."""
    policies = Policy.objects.only("id", "name", "version", "enabled").order_by("name")
    return render(request, "dashboard/tuning/what_if_index.html", {"policies": policies})
