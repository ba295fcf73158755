"""Guessing admin passwords: django-axes locks a username out from one address after a few failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # the `operator` persona's


@pytest.fixture(autouse=True)
def axes_on(settings) -> None:
    settings.AXES_ENABLED = True  # the test settings turn it off for `client.login`


def log_in(client: Client, password: str, address: str = "198.51.100.7"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "operator", "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_sixty_wrong_passwords_then_the_right_one_does_not_log_in(client, operator) -> None:
    for attempt in range(60):
        log_in(client, f"wrong-{attempt}")

    response = log_in(client, PASSWORD)

    assert response.status_code == 429
    assert not logged_in(client)


def test_the_lockout_starts_at_the_failure_limit(client, operator, settings) -> None:
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, f"wrong-{attempt}").status_code == 200  # the form again, with its error

    assert log_in(client, "wrong-last").status_code == 429


def test_the_same_username_from_another_address_may_still_log_in(client, operator, settings) -> None:
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"wrong-{attempt}")

    response = log_in(Client(), PASSWORD, address="198.51.100.8")

    assert response.status_code == 302


def test_after_the_cool_off_the_right_password_logs_in(client, operator, settings) -> None:
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"wrong-{attempt}")

    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        response = log_in(client, PASSWORD)

    assert response.status_code == 302
    assert logged_in(client)
