"""The product's one navigation, by role: what an operator and a finance reader each reach.

A context processor gives every page `navigation` (the links this user may follow) and
`role`. An item is shown when the user holds its permission and one of its pages exists
(the first URL name that resolves): pages another feature adds later take over from the
admin page that stands in for them. Admin pages are offered to staff only, as the admin
lets no one else in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse

OPERATOR = "operator"
FINANCE = "finance"
# Who counts as an operator: someone who may change routing configuration.
OPERATOR_PERMISSION = "routing.change_policy"
FINANCE_PERMISSION = "billing.view_finance"


@dataclass(frozen=True, slots=True)
class Item:
    label: str
    url_names: tuple[str, ...]  # the first that resolves is linked
    permission: str | None  # None: staff only (the admin)
    # Pages of this item that live outside its URL (a policy's what-if is under /tuning/).
    also_under: str = ""


OPERATOR_ITEMS = (
    Item("Dashboard", ("dashboard:home",), "dashboard.view_rollup"),
    Item("Requests", ("dashboard:requests",), "routing.view_requestrecord"),
    Item("Policies", ("admin:routing_policy_changelist",), "routing.view_policy"),
    Item(
        "Experiments",
        ("dashboard:experiments", "admin:routing_experiment_changelist", "admin:routing_policy_changelist"),
        "routing.view_policy",
    ),
    Item("Tuning", ("dashboard:tuning",), "dashboard.view_tuningproposal"),
    Item("What-if", ("dashboard:what-if-index",), "routing.view_requestrecord", also_under="/what-if/"),
    Item("Alerts", ("dashboard:alerts", "admin:dashboard_alertevent_changelist"), "dashboard.view_alertevent"),
    Item("Budgets", ("billing:budgets", "admin:billing_budget_changelist"), "billing.view_budget"),
    Item("Admin", ("admin:index",), None),
)
FINANCE_ITEMS = (
    Item("Reports", ("billing:index",), FINANCE_PERMISSION),
    Item("Budgets", ("billing:budgets", "admin:billing_budget_changelist"), "billing.view_budget"),
    Item("Audit", ("audit:list", "admin:audit_auditentry_changelist"), "audit.view_auditentry"),
)


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str
    current: bool


def role_of(user: Any) -> str | None:
    """`operator`, `finance` or None (signed out, or neither)."""
    if not user.is_authenticated:
        return None
    if user.has_perm(OPERATOR_PERMISSION):
        return OPERATOR
    if user.has_perm(FINANCE_PERMISSION):
        return FINANCE
    return None


def links_for(user: Any, path: str) -> list[Link]:
    """The links this user may follow, the one `path` is under marked current."""
    role = role_of(user)
    items = OPERATOR_ITEMS if role == OPERATOR else FINANCE_ITEMS if role == FINANCE else ()
    shown = [(item, url) for item in items if _allowed(user, item) and (url := _url(item, user))]
    current = max(shown, key=lambda pair: _closeness(path, *pair), default=None)
    if current is not None and _closeness(path, *current) == 0:
        current = None
    return [Link(item.label, url, (item, url) == current) for item, url in shown]


def _closeness(path: str, item: Item, url: str) -> int:
    """How well `path` belongs to the item: the longest URL it is under wins; 0: not at all."""
    if item.also_under and item.also_under in path:
        return len(path)
    return len(url) if path.startswith(url) else 0


def landing_url(user: Any) -> str:
    """Where signing in leads: finance to its reports, operators to the dashboard, others to the admin."""
    role = role_of(user)
    if role == FINANCE:
        return reverse("billing:index")
    return reverse("dashboard:home") if role == OPERATOR else reverse("admin:index")


def _allowed(user: Any, item: Item) -> bool:
    return bool(user.is_staff) if item.permission is None else bool(user.has_perm(item.permission))


def _url(item: Item, user: Any) -> str | None:
    """The first of the item's pages that exists and this user may open (the admin's need staff)."""
    for name in item.url_names:
        if name.startswith("admin:") and not user.is_staff:
            continue
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the signed-in user's navigation and role."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": [], "role": None}
    return {"navigation": links_for(user, request.path), "role": role_of(user)}


@login_required
def landing(request: HttpRequest) -> HttpResponse:
    """After signing in (with no page asked for): each role's own first page."""
    return redirect(landing_url(request.user))
