"""The quality loop's receivers: sampled texts, replay labels, then shadow evaluations.

Each derives from the records stored just now, so each runs once per record.
"""

from __future__ import annotations

from routing.quality import labels, samples, shadow
from routing.records.signals import records_stored

records_stored.connect(samples.samples_store, dispatch_uid="samples_store")
records_stored.connect(labels.labels_from_replay, dispatch_uid="labels_from_replay")
records_stored.connect(shadow.shadow_schedule, dispatch_uid="shadow_schedule")
