from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from routing.records.reconcile import dead_letters, default_window, ledger_reconcile


class Command(BaseCommand):
    help = (
        "Recompute the spend ledger from the request records and report every difference and every record "
        "the flusher could not store (exit 1 if any)."
    )

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
        refused = dead_letters(start=start, end=end)
        for letter in refused:
            self.stdout.write(f"dead letter {letter.record_id or letter.entry}: {letter.error}")
        problems = []
        if differences:
            problems.append(f"{len(differences)} differences between the ledger and the records")
        if refused:
            problems.append(f"{len(refused)} records in the dead letter, in neither the ledger nor the records")
        if problems:
            raise CommandError(f"{'; '.join(problems)} from {start} to {end}.")
        self.stdout.write(self.style.SUCCESS(f"Ledger and records agree from {start} to {end}."))
