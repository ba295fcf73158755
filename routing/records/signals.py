"""`records_stored`: request records stored just now, sent inside the storing transaction.

The flusher (`routing.records.flush.records_persist`) sends it with the payloads stored
in this transaction (never a re-delivered one), so each receiver derives exactly once;
pushes outside the database go in `transaction.on_commit`.
"""

from __future__ import annotations

from django.dispatch import Signal

records_stored = Signal()  # kwargs: payloads (list of routing.records.payload.RecordPayload)
