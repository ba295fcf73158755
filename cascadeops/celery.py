"""The Celery app and the whole beat schedule, in one place."""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")

app = Celery("cascadeops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Every 2 s: move request records from the durable buffer into the database. A
    # dedicated `manage.py run_recorder` loop may run beside it; both are safe together.
    "records_flush": {
        "task": "routing.tasks.flush_request_records",
        "schedule": timedelta(seconds=2),
    },
}
