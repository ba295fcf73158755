"""The what-if candidate as operators give it: the page's form, and the JSON API's query parameters."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone

from dashboard.tuning.whatif import RECORDED, Candidate
from routing.models import Policy, ScorerVersion

DEFAULT_DAYS = 7


class WhatIfForm(forms.Form):
    """A candidate policy to replay a window of traffic under; blank fields keep the policy's."""

    days = forms.IntegerField(
        min_value=1, max_value=90, initial=DEFAULT_DAYS, required=False, help_text="Replay the last N days."
    )
    threshold = forms.FloatField(min_value=0.0, max_value=1.0, required=False)
    scorer = forms.ChoiceField(required=False)
    cheap_input_price = forms.DecimalField(min_value=Decimal(0), required=False, label="Cheap tier input $/1M")
    cheap_output_price = forms.DecimalField(min_value=Decimal(0), required=False, label="Cheap tier output $/1M")
    strong_input_price = forms.DecimalField(min_value=Decimal(0), required=False, label="Strongest tier input $/1M")
    strong_output_price = forms.DecimalField(min_value=Decimal(0), required=False, label="Strongest tier output $/1M")

    def __init__(self, *args: Any, policy: Policy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = ScorerVersion.objects.filter(policy=policy, kind="learned").order_by("-version")
        scorer = self.fields["scorer"]
        assert isinstance(scorer, forms.ChoiceField)
        scorer.choices = [
            (RECORDED, "As recorded"),
            ("heuristic", "Heuristic"),
            ("logprob", "Log-probabilities"),
            *((f"version:{v.id}", f"Learned v{v.version}{' (active)' if v.active else ''}") for v in versions),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for side in ("cheap", "strong"):
            pair = (data.get(f"{side}_input_price"), data.get(f"{side}_output_price"))
            if (pair[0] is None) != (pair[1] is None):
                raise forms.ValidationError(f"Give both {side} tier prices, or neither.")
        return data

    def candidate(self) -> Candidate:
        data = self.cleaned_data
        return Candidate(
            threshold=data.get("threshold"),
            scorer=data.get("scorer") or RECORDED,
            cheap_prices=_prices(data, "cheap"),
            strong_prices=_prices(data, "strong"),
        )

    def since(self) -> datetime:
        return timezone.now() - timedelta(days=self.cleaned_data.get("days") or DEFAULT_DAYS)


def _prices(data: dict[str, Any], side: str) -> tuple[Decimal, Decimal] | None:
    input_price, output_price = data.get(f"{side}_input_price"), data.get(f"{side}_output_price")
    if input_price is None or output_price is None:
        return None
    return Decimal(input_price), Decimal(output_price)
