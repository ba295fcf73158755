"""Put the shadow evaluations made before quality checks were ledgered on the ledger.

Their calls were paid for, and `ledger_reconcile` now expects a quality-check line for
every evaluation that made one: the same line `routing.quality_spend` writes, built here
from the historical models. Semantic cache checks need none (they arrived with the change).
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations


def ledger_earlier_evaluations(apps, schema_editor):
    ShadowEvaluation = apps.get_model("routing", "ShadowEvaluation")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    LedgerTagEntry = apps.get_model("billing", "LedgerTagEntry")
    tz = ZoneInfo(settings.BILLING_TIME_ZONE)
    paid = ShadowEvaluation.objects.filter(finished__isnull=False).exclude(reference_model="").select_related("record")
    for evaluation in paid.iterator(chunk_size=2000):
        record, day = evaluation.record, datetime.astimezone(evaluation.finished, tz).date()
        LedgerEntry.objects.create(
            day=day,
            team=record.team,
            app=record.app,
            api_key_prefix=record.api_key_prefix,
            policy=record.policy_name,
            model=evaluation.reference_model,
            end_user=record.end_user,
            attempts=1,
            input_tokens=evaluation.input_tokens,
            output_tokens=evaluation.output_tokens,
            cost=evaluation.cost,
            quality_checks=1,
            quality_cost=evaluation.cost,
        )
        for key, value in (record.metadata or {}).items():
            LedgerTagEntry.objects.create(day=day, key=key, value=value, team=record.team, cost=evaluation.cost)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0008_semantic_check_calls"),
        ("billing", "0003_ledger_quality_checks"),
    ]

    operations = [migrations.RunPython(ledger_earlier_evaluations, migrations.RunPython.noop)]
