"""Reconstructing, for a stored record, the exact policy version that routed it: live, with the openai client."""

from __future__ import annotations

import pytest

from routing.models import Policy, RequestRecord
from tests.conftest import flush_records
from tests.routing.api.test_live_openai import MIXTRAL_RIGHT, prompt_starting

pytestmark = pytest.mark.live


def test_each_routed_record_names_the_exact_version_that_routed_it(demo_client, api, settings):
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    prompt = [{"role": "user", "content": prompt_starting(MIXTRAL_RIGHT)}]
    demo = Policy.objects.get(name="demo")

    first = demo_client.chat.completions.with_raw_response.create(model="demo", messages=prompt)
    tiers = [{"position": t.position, "endpoint": t.endpoint_id, "threshold": 1.0} for t in demo.tiers.all()]
    assert api.patch(f"/api/routing/policies/{demo.pk}/", {"tiers": tiers}, format="json").status_code == 200
    second = demo_client.chat.completions.with_raw_response.create(model="demo", messages=prompt)
    flush_records()

    routed = {}
    for raw in (first, second):
        record = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])
        body = api.get(f"/api/routing/request-records/{record.pk}/policy-version/").json()
        routed[record.final_tier] = (
            record.policy_version,
            body["number"],
            [t["threshold"] for t in body["snapshot"]["tiers"]],
        )
    # The cheap answer was accepted under version 1's 0.9; version 2 asks 1.0 of it, so it escalates.
    assert routed == {0: (1, 1, [0.9, 1.0]), 1: (2, 2, [1.0, 1.0])}
