"""Semantic cache hits drawn for verification are re-asked once their record is stored."""

from __future__ import annotations

from routing.cache import verify
from routing.records.signals import records_stored

records_stored.connect(verify.semantic_checks_schedule, dispatch_uid="semantic_checks_schedule")
