"""The quality loop in the dashboard API: tuning configs and proposals, and what-if replay."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.drf import ViewModelPermissions
from dashboard.models import TuningConfig, TuningProposal
from dashboard.tuning.forms import WhatIfForm
from dashboard.tuning.whatif import whatif_replay
from routing.models import Policy

VIEW_RECORDS = "routing.view_requestrecord"


class TuningConfigSerializer(serializers.ModelSerializer[TuningConfig]):
    """How auto-tuning may change one policy."""

    class Meta:
        model = TuningConfig
        fields = [
            "id",
            "policy",
            "mode",
            "target",
            "target_value",
            "tier",
            "threshold_min",
            "threshold_max",
            "max_step",
            "min_labels",
            "retrain_after_labels",
            "window_days",
            "holdout_share",
            "last_run_at",
            "created",
            "updated",
        ]
        read_only_fields = ["last_run_at", "created", "updated"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = TuningConfig(**{**self._current(), **attrs})
        instance.clean()
        return attrs

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        return {f: getattr(self.instance, f) for f in ("target", "target_value", "threshold_min", "threshold_max")}


class TuningProposalSerializer(serializers.ModelSerializer[TuningProposal]):
    """A threshold change auto-tuning proposed or made; decided on the tuning page."""

    class Meta:
        model = TuningProposal
        fields = [
            "id",
            "policy",
            "tier",
            "threshold_before",
            "threshold_after",
            "scorer_version_before",
            "scorer_version_after",
            "method",
            "reason",
            "evidence",
            "status",
            "policy_version_before",
            "policy_version_applied",
            "created",
            "decided_by",
            "decided_at",
            "rolled_back_by",
            "rolled_back_at",
        ]
        read_only_fields = fields


class TuningConfigViewSet(viewsets.ModelViewSet[TuningConfig]):
    """Auto-tuning settings, one per policy."""

    queryset = TuningConfig.objects.all()
    serializer_class = TuningConfigSerializer
    permission_classes = [ViewModelPermissions]


class TuningProposalViewSet(viewsets.ReadOnlyModelViewSet[TuningProposal]):
    """Every proposal and change, newest first."""

    queryset = TuningProposal.objects.all()
    serializer_class = TuningProposalSerializer
    permission_classes = [ViewModelPermissions]


class WhatIfApi(APIView):
    """GET /api/dashboard/what-if/?policy=<id>&days=&threshold=&scorer=&<side>_<input|output>_price=

    The what-if report as JSON: the candidate's outcome, the current threshold's, the
    routing metrics and the whole threshold sweep. Money is given as strings.
    """

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("policy", int, required=True),
            OpenApiParameter("days", int, description="Replay the last N days (default 7)."),
            OpenApiParameter("threshold", float, description="The candidate's threshold (default: the policy's)."),
            OpenApiParameter("scorer", str, description='"recorded", "heuristic", "logprob" or "version:<id>".'),
            *(
                OpenApiParameter(f"{side}_{kind}_price", OpenApiTypes.DECIMAL, description="USD per 1M tokens.")
                for side in ("cheap", "strong")
                for kind in ("input", "output")
            ),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        if not request.user.has_perm(VIEW_RECORDS):
            self.permission_denied(request, message="Reading request records is needed.")
        policy = _policy_param(request)
        form = WhatIfForm(request.query_params, policy=policy)
        if not form.is_valid():
            raise ValidationError(form.errors.get_json_data())
        return Response(whatif_replay(policy=policy, since=form.since(), candidate=form.candidate()))


def _policy_param(request: Request) -> Policy:
    raw = request.query_params.get("policy", "")
    # isdecimal(), not isdigit(): "²" is a digit that int() refuses (a 500, not a 400); and at
    # most 18 digits, so the id fits a bigint and int() never meets its 4,300-digit limit.
    policy = Policy.objects.filter(id=int(raw)).first() if raw.isdecimal() and len(raw) <= 18 else None
    if policy is None:
        raise ValidationError({"policy": ["Give the id of an existing policy."]})
    return policy
