"""Every page carries a Content-Security-Policy; inline scripts run only with its nonce."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_pages_send_a_content_security_policy(client) -> None:
    response = client.get("/admin/login/")

    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy + ";"  # a nonce only where a page uses one; no CDN
    assert "object-src 'none'" in policy
    assert "'unsafe-eval'" not in policy


def test_the_api_docs_load_their_start_up_script_from_a_url_not_inline(client, operator) -> None:
    client.force_login(operator)
    page = client.get("/api/docs/").content.decode()

    assert "<script>" not in page.replace(" ", "")
    assert "?script=" in page
    # Served by this gateway (drf-spectacular-sidecar): the page works without the internet.
    assert "cdn.jsdelivr.net" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page


def test_an_inline_chart_script_carries_the_nonce_the_policy_names(client, django_user_model) -> None:
    from django.contrib.auth.models import Group

    from billing.permissions import FINANCE
    from billing.reports.build import report_build_monthly
    from tests.billing.reports.test_build import store
    from tests.billing.reports.test_compute import FEB, february_rows

    store(february_rows(), batches=2)
    report_build_monthly(month=FEB)
    user = django_user_model.objects.create_user("fiona", is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE))
    client.force_login(user)

    response = client.get("/finance/2025-02/")

    nonce = re.search(r'<script nonce="([^"]+)">', response.content.decode())
    assert nonce is not None
    assert f"'nonce-{nonce.group(1)}'" in response["Content-Security-Policy"]
