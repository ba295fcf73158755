from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from routing.records.reconcile import default_window, ledger_reconcile


class Command(BaseCommand):
    help = "Recompute the spend ledger from the request records and report every difference (exit 1 if any)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from", dest="start", type=date.fromisoformat, help="First day (default: last month's 1st)."
        )
        parser.add_argument("--to", dest="end", type=date.fromisoformat, help="Day after the last (default: tomorrow).")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = default_window(timezone.localdate())
        start, end = options["start"] or start, options["end"] or end
        differences = ledger_reconcile(start=start, end=end)
        for d in differences:
            self.stdout.write(f"{d.dimensions}: {d.field} ledger {d.ledger} records {d.records}")
        if differences:
            raise CommandError(
                f"{len(differences)} differences between the ledger and the records from {start} to {end}."
            )
        self.stdout.write(self.style.SUCCESS(f"Ledger and records agree from {start} to {end}."))
