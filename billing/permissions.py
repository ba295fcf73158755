"""The `finance` and `operator` groups, kept in step after every `migrate`.

They are data, not migrations, so a permission added to a model later reaches them on the
next `migrate`. `set()` gives each group exactly the permissions listed here on every run:
idempotent, and it undoes hand edits to these two groups (add people to them, not rights;
make another group for other rights). See docs/billing.md.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q
from django.db.models.signals import post_migrate

FINANCE = "finance"
OPERATOR = "operator"

CRUD = ("add", "change", "delete", "view")
VIEW = ("view",)

# (app label, model name, actions). Finance reads spend; operators also edit configuration.
READ_SPEND = [
    ("billing", "ledgerentry", VIEW),
    ("billing", "ledgertagentry", VIEW),
    ("billing", "monthlyreport", VIEW),
    ("billing", "budget", VIEW),
    ("billing", "budgetalert", VIEW),
    ("routing", "requestrecord", VIEW),
    ("routing", "requestattempt", VIEW),
    ("dashboard", "rollup", VIEW),
    ("dashboard", "spendrollup", VIEW),
    ("audit", "auditentry", VIEW),
]
EDIT_CONFIG = [
    ("routing", "modelendpoint", CRUD),
    ("routing", "policy", CRUD),
    ("routing", "policyversion", VIEW),
    ("routing", "taskcategory", CRUD),
    ("routing", "categoryladder", CRUD),
    ("routing", "laddertier", CRUD),
    ("routing", "goalweights", ("view", "change")),
    ("routing", "experiment", CRUD),
    ("routing", "experimentarm", CRUD),
    ("routing", "policytier", CRUD),
    ("routing", "taskrule", CRUD),
    ("routing", "apikey", CRUD),
    ("billing", "budget", CRUD),
    ("billing", "pricebookentry", CRUD),
    ("dashboard", "slatarget", CRUD),
    ("dashboard", "alertrule", CRUD),
    ("dashboard", "alertevent", ("view", "change")),
    ("dashboard", "alertdelivery", VIEW),
    ("dashboard", "tuningconfig", CRUD),
    ("dashboard", "tuningproposal", ("view", "decide")),
    ("routing", "scorerversion", CRUD),
    ("routing", "qualitylabel", VIEW),
    ("routing", "shadowevaluation", VIEW),
]
# The finance pages (`/finance/`) check this one; it is declared on MonthlyReport.Meta.
VIEW_FINANCE = ("billing", "view_finance")

GROUP_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    FINANCE: [VIEW_FINANCE, *[(app, f"{action}_{model}") for app, model, actions in READ_SPEND for action in actions]],
    OPERATOR: [
        VIEW_FINANCE,
        *[(app, f"{action}_{model}") for app, model, actions in READ_SPEND + EDIT_CONFIG for action in actions],
    ],
}


def groups_sync(*, apps: Apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the `finance` and `operator` groups, or reset their permissions to the list above.

    Permissions are created first: `post_migrate` reaches billing before routing (settings
    order), so on a fresh database routing's permissions would not exist yet.
    """
    for label in ("audit", "billing", "routing", "dashboard"):
        # The real app config: the migration state's stub has no models module to read.
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, wanted in GROUP_PERMISSIONS.items():
        match = Q(pk__in=[])
        for app_label, codename in wanted:
            match |= Q(content_type__app_label=app_label, codename=codename)
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        group.permissions.set(permission_model.objects.using(using).filter(match))


def _groups_sync_after_migrate(
    sender: AppConfig, apps: Apps | None = None, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    # `flush` (transactional tests) sends post_migrate without `apps`.
    groups_sync(apps=apps or global_apps, using=using)


post_migrate.connect(_groups_sync_after_migrate, dispatch_uid="billing_groups_sync")
