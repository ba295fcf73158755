"""The one place channel-layer group names are built, and who may join them.

A dashboard page joins the group of its scope (every policy, or one policy) and the
alerts group; the ticker (`dashboard.live.broadcast`) sends each group one message per tick.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

ALL = "dashboard.all"
ALERTS = "dashboard.alerts"
VIEW_PERMISSION = "dashboard.view_rollup"


def for_scope(policy_id: int | None) -> str:
    """The group of every policy's charts (`None`) or of one policy's."""
    return ALL if policy_id is None else f"dashboard.policy.{policy_id}"


def may_watch(user: Any) -> bool:
    """Whether a user may open the dashboard (and so its websocket)."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.has_perm(VIEW_PERMISSION))


def may_still_watch(user: Any) -> bool:
    """`may_watch` for the user as the database has it now (deactivated, rights taken away)."""
    if user is None or not user.is_authenticated:
        return False
    fresh = get_user_model().objects.filter(pk=user.pk).first()
    return may_watch(fresh)


def for_subscription(content: Any) -> str | None:
    """The group a page's `{"subscribe": …}` message asks for, or None for a bad request.

    `{"subscribe": "all"}`, `{"subscribe": "policy", "policy": 3}`, `{"subscribe": "alerts"}`.
    """
    if not isinstance(content, dict):
        return None
    kind = content.get("subscribe")
    if kind == "all":
        return ALL
    if kind == "alerts":
        return ALERTS
    policy = content.get("policy")
    if kind == "policy" and type(policy) is int and policy > 0:
        return for_scope(policy)
    return None
