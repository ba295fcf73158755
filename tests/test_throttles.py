"""The management API throttles each user, and each address signed out (DRF throttles)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/routing/model-endpoints/"


@pytest.fixture(autouse=True)
def low_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates once, at import; the test settings raise them for every other test.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "3/minute", "user": "5/minute"})
    # Counts of their own: user ids repeat from test to test, and earlier tests' calls count.
    monkeypatch.setattr(SimpleRateThrottle, "cache", LocMemCache(f"throttle-test-{uuid.uuid4().hex}", {}))


def test_the_settings_throttle_users_and_anonymous_callers_from_the_environment() -> None:
    classes = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]

    assert "rest_framework.throttling.AnonRateThrottle" in classes
    assert "rest_framework.throttling.UserRateThrottle" in classes


def test_a_signed_out_address_is_throttled_where_it_may_read(db) -> None:
    # DRF checks permissions first: only what a signed-out caller may read counts against it.
    client = APIClient(REMOTE_ADDR="203.0.113.51")
    statuses = [client.get("/api/schema/").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_a_user_is_throttled_and_told_when_to_retry(django_user_model) -> None:
    user = django_user_model.objects.create_superuser("throttled", "t@example.com", "pw-not-used")
    client = APIClient(REMOTE_ADDR="203.0.113.52")
    client.force_authenticate(user)

    statuses = [client.get(ENDPOINTS).status_code for _ in range(5)]
    response = client.get(ENDPOINTS)

    assert statuses == [200] * 5
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
