"""The audit trail: one append-only entry per configuration change, with the values before and after.

See docs/audit.md. Write through `common.audit.services` (`audit_record`, `track`); who and
from where come from `common.audit.context`.
"""
