"""Request-log fixtures: personas of each role, and traffic from two keys."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from routing.config.snapshots import config_cache, load_quality
from routing.models import Policy
from testing.factories import make_key

# The live dashboard's browser and demo fixtures, for the browser tests here: shared, not copied.
from tests.dashboard.live.test_browser import browser, demo  # noqa: F401
from tests.dashboard.traffic import Traffic


def _member(django_user_model: Any, name: str, group: str) -> Any:
    user = django_user_model.objects.create_user(name, password="correct-horse-battery")
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def ops_user(db: None, django_user_model: Any) -> Any:
    """A member of the `operator` group, and staff, as operators edit policies in the admin
    (not a superuser: permissions are read from the database)."""
    user = _member(django_user_model, "olga", "operator")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def finance_user(db: None, django_user_model: Any) -> Any:
    return _member(django_user_model, "fred", "finance")


@pytest.fixture
def log_traffic(db: None) -> Traffic:
    return Traffic.for_new_policy("log-demo", team="growth", app="support-bot")


@pytest.fixture
def second_key(log_traffic: Traffic) -> Traffic:
    """The same policy, through another team's key."""
    key, _ = make_key(log_traffic.policy, team="research", app="notebook")
    return Traffic(log_traffic.policy, key)


def keep_text(policy: Policy, *, patterns: str = "", days: int = 30) -> None:
    """Turn text keeping on for a policy, and load it as a worker would."""
    Policy.objects.filter(id=policy.id).update(store_text=True, text_redact_patterns=patterns, text_retention_days=days)
    config_cache.quality = load_quality({})
