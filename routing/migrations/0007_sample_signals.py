from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0006_chat_api_surface"),
    ]

    operations = [
        migrations.AddField(
            model_name="requestsample",
            name="signals",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="What the quality gate measured of the answer (agreement, judge, logprobs).",
            ),
        ),
    ]
