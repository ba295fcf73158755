from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="rollup",
            name="refused",
            field=models.PositiveIntegerField(
                default=0, help_text="Requests turned away before routing (tier -2; `model` holds the reason)."
            ),
        ),
        migrations.AlterField(
            model_name="rollup",
            name="tier",
            field=models.SmallIntegerField(
                help_text="The tier that answered; -1 when every tier failed, -2 for refused requests."
            ),
        ),
        migrations.AlterField(
            model_name="rollup",
            name="model",
            field=models.CharField(
                blank=True, help_text="The endpoint that answered; for refused requests, the reason.", max_length=100
            ),
        ),
        migrations.AddField(
            model_name="alertrule",
            name="reason",
            field=models.CharField(
                blank=True,
                help_text="Refusal metrics: only refusals whose reason contains this (429, budget_exceeded, "
                "rate_limit_exceeded, 400); empty: every refusal.",
                max_length=60,
            ),
        ),
        migrations.AlterField(
            model_name="alertrule",
            name="metric",
            field=models.CharField(
                choices=[
                    ("hourly_cost", "Hourly cost (USD per hour over the window)"),
                    ("daily_budget_pct", "Today's cost as % of the daily budget"),
                    ("mean_quality", "Mean quality of labelled answers (0–1)"),
                    ("escalation_rate", "Escalation rate (%)"),
                    ("cheap_tier_acceptance", "Cheap-tier acceptance rate (%)"),
                    ("p95_latency", "p95 latency (ms)"),
                    ("error_rate", "Error rate (%)"),
                    ("refusal_rate", "Refused requests (% of requests received)"),
                    ("refusals", "Refused requests (count over the window)"),
                    ("cost_anomaly", "Cost anomaly (standard deviations from the trailing mean)"),
                    ("budget", "Budget limits (% of a budget's limit used, when it crosses its soft limit or limit)"),
                ],
                max_length=30,
            ),
        ),
    ]
