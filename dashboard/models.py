"""Dashboard's tables: rollups, SLA targets, alert rules and tuning (built in later issues)."""
