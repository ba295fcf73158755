"""Background jobs act as "beat", named after their task, for the entries they write."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from celery.signals import task_postrun, task_prerun

from common.audit.choices import AuditSource
from common.audit.context import Actor, acting_as

_running: dict[str, AbstractContextManager[None]] = {}


@task_prerun.connect(dispatch_uid="audit_task_prerun")
def task_started(task_id: str, task: Any, **kwargs: Any) -> None:
    scope = acting_as(Actor(name=task.name, source=AuditSource.BEAT))
    scope.__enter__()
    _running[task_id] = scope


@task_postrun.connect(dispatch_uid="audit_task_postrun")
def task_finished(task_id: str, **kwargs: Any) -> None:
    scope = _running.pop(task_id, None)
    if scope is not None:
        scope.__exit__(None, None, None)
