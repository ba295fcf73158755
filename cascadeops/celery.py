"""The Celery app and the whole beat schedule, in one place."""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery
from celery.schedules import crontab

from cascadeops.local_state import prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")
prepare()

app = Celery("cascadeops")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each feature keeps its tasks beside it, in `<feature>/tasks.py`.
app.autodiscover_tasks(
    [
        "routing.records",
        "routing.cache",
        "routing.quality",
        "billing.budgets",
        "billing.reports",
        "dashboard.alerts",
        "dashboard.rollups",
        "dashboard.tuning",
    ]
)

app.conf.beat_schedule = {
    # Every 2 s: move request records from the durable buffer into the database. A
    # dedicated `manage.py run_recorder` loop may run beside it; both are safe together.
    "records_flush": {
        "task": "routing.records.tasks.flush_request_records",
        "schedule": timedelta(seconds=2),
    },
    # 00:15 on the 1st of each month: build last month's finance report. Immutable once
    # ready, so a second run (or an admin's on-demand build) returns the stored one.
    "report_build_monthly": {
        "task": "billing.reports.tasks.report_build_monthly_task",
        "schedule": crontab(minute=15, hour=0, day_of_month=1),
    },
    # Hourly, at :40: auto-tuning (retrain, calibrate, propose or apply) for every policy
    # whose tuning is on. A config claims itself per run, so a duplicate run does nothing.
    # Pause it in the admin (Periodic tasks): "enabled" survives a beat restart, while a
    # schedule edited there is reset to this one when beat starts again.
    "tuning_propose": {
        "task": "dashboard.tuning.tasks.tuning_propose",
        "schedule": crontab(minute=40),
    },
    # Hourly, at :25: retrain the learned scorer of every policy with 50 new labels since its
    # last version; the new one replaces the active one only when it does better on the
    # newest labels, held out (routing.quality.learning). Idempotent: a second run finds
    # no new labels.
    "scorers_retrain": {
        "task": "routing.quality.tasks.scorers_retrain",
        "schedule": crontab(minute=25),
    },
    # Every minute, on the minute: evaluate the alert rules against the minute rollups.
    # Each rule is claimed for the minute, so a duplicate run evaluates nothing twice.
    "alerts_evaluate": {
        "task": "dashboard.alerts.tasks.alerts_evaluate",
        "schedule": crontab(),
    },
    # Daily at 03:35: delete the request log's kept prompts and answers past their policy's
    # retention. A range delete: a second run finds nothing left to delete.
    "request_texts_purge": {
        "task": "routing.records.tasks.request_texts_purge",
        "schedule": crontab(minute=35, hour=3),
    },
    # Every 5 minutes: endpoints' measured p95 latency and quality for selection; it
    # overwrites every row, so running twice is harmless.
    "measures_refresh": {
        "task": "dashboard.rollups.tasks.measures_refresh",
        "schedule": crontab(minute="*/5"),
    },
    # Daily at 03:20: drop rollups past their retention (CASCADEOPS_ROLLUP_*_RETENTION_DAYS).
    "rollups_prune": {
        "task": "dashboard.rollups.tasks.rollups_prune",
        "schedule": crontab(minute=20, hour=3),
    },
}
