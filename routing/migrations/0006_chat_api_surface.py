import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0005_policy_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelendpoint",
            name="kind",
            field=models.CharField(
                choices=[("chat", "Chat completions"), ("embeddings", "Embeddings")],
                default="chat",
                help_text="Chat completions (a cascade tier) or embeddings (a policy's /v1/embeddings endpoint).",
                max_length=12,
            ),
        ),
        migrations.AddField(
            model_name="policy",
            name="unknown_fields",
            field=models.CharField(
                choices=[
                    ("refuse", "Refuse them (400 unsupported_parameter)"),
                    ("pass", "Pass them to OpenAI-compatible providers"),
                ],
                default="refuse",
                help_text="Request fields the API does not know: refuse them (400), or pass them to "
                "OpenAI-compatible providers as sent.",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="policy",
            name="tools_first_tier",
            field=models.PositiveSmallIntegerField(
                blank=True,
                help_text="Requests with tools start on at least this tier (empty: wherever the task rules say).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="policy",
            name="embeddings_endpoint",
            field=models.ForeignKey(
                blank=True,
                help_text="Where /v1/embeddings requests through this policy go (empty: the policy serves none).",
                limit_choices_to={"kind": "embeddings"},
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="embeddings_of_policies",
                to="routing.modelendpoint",
            ),
        ),
    ]
