"""Quality labels: how good the answer a request returned was, from three sources.

`feedback` (the app, through `POST /v1/feedback`), `shadow` (the strongest tier re-checked
a cheaper tier's answer) and `replay` (the demo's recorded correctness, stored with the
record). At most one per source and request; where there are several, `LABEL_PRIORITY`
decides. See docs/quality.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from routing.choices import LabelSource, RecordStatus
from routing.config.snapshots import KeyInfo
from routing.config.version import discard_stale_connections
from routing.models import QualityLabel, RequestRecord
from routing.records.payload import RecordPayload

LABEL_PRIORITY = (LabelSource.FEEDBACK, LabelSource.SHADOW, LabelSource.REPLAY)
# A label at or above this counts as "acceptable" where a yes/no is needed (training, replay).
ACCEPTABLE = 0.5


class RecordNotStoredYet(Exception):
    """No record has this id (yet): records reach the database seconds after the answer."""


class RecordNotOwned(Exception):
    """The record exists but belongs to another team or app."""


def feedback_record(
    *, key: KeyInfo, request_id: uuid.UUID, value: float, comment: str = "", source: str = LabelSource.FEEDBACK
) -> tuple[QualityLabel, bool]:
    """Store the app's label for one of its requests; returns (label, created).

    Idempotent per (request, source): posting again replaces the value and comment.
    Only the team and app the request was made for may label it.
    """
    discard_stale_connections()
    record = RequestRecord.objects.filter(id=request_id).only("id", "team", "app").first()
    if record is None:
        raise RecordNotStoredYet(str(request_id))
    if (record.team, record.app) != (key.team, key.app):
        raise RecordNotOwned(str(request_id))
    return QualityLabel.objects.update_or_create(
        record=record, source=source, defaults={"value": value, "comment": comment}
    )


def labels_from_replay(sender: Any, *, payloads: list[RecordPayload], **kwargs: Any) -> None:
    """`records_stored` receiver: a `replay` label for each answer with a recorded grade.

    Runs inside the storing transaction with the payloads stored just now, so a
    re-delivered batch adds no label twice.
    """
    QualityLabel.objects.bulk_create(
        QualityLabel(record_id=p["id"], source=LabelSource.REPLAY, value=label)
        for p in payloads
        if p["status"] == RecordStatus.ANSWERED and (label := p.get("quality_label")) is not None
    )


def best_label(labels: Iterable[QualityLabel]) -> QualityLabel | None:
    """The label that counts among a record's labels (`LABEL_PRIORITY`), or None."""
    by_source = {label.source: label for label in labels}
    return next((by_source[s] for s in LABEL_PRIORITY if s in by_source), None)
