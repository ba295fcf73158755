"""Request records stored → rollups, in the flusher's transaction."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from dashboard.rollups import services
from routing.records.payload import RecordPayload
from routing.records.signals import records_stored


@receiver(records_stored, dispatch_uid="dashboard_rollups_record")
def rollups_on_records_stored(sender: type, payloads: list[RecordPayload], **kwargs: Any) -> None:
    # Inside the flusher's transaction: the rollups commit (or roll back) with the records.
    services.rollups_record(payloads=payloads)
