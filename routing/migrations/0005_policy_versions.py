# Policy versions: the whole policy stored on every change (routing.policies.versions).

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def record_current_versions(apps, schema_editor):
    """Every existing policy's current configuration becomes its stored current version."""
    from routing.policies.versions import VERSION_PREFETCH, policy_version_json

    Policy = apps.get_model("routing", "Policy")
    PolicyVersion = apps.get_model("routing", "PolicyVersion")
    for policy in Policy.objects.prefetch_related(*VERSION_PREFETCH):
        PolicyVersion.objects.create(
            policy=policy,
            policy_name=policy.name,
            number=policy.version,
            snapshot=policy_version_json(policy),
            author="migration",
            source="system",
        )


class Migration(migrations.Migration):

    dependencies = [
        ("routing", "0004_request_log"),
    ]

    operations = [
        migrations.CreateModel(
            name="PolicyVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "policy_name",
                    models.CharField(help_text="The policy's name then; kept if it is deleted.", max_length=100),
                ),
                ("number", models.PositiveIntegerField()),
                ("snapshot", models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder)),
                (
                    "author",
                    models.CharField(blank=True, help_text="The user, the job or the command.", max_length=200),
                ),
                ("source", models.CharField(blank=True, max_length=10)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "restored_from",
                    models.PositiveIntegerField(
                        blank=True, help_text="The earlier version this one restored.", null=True
                    ),
                ),
                (
                    "policy",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="versions",
                        to="routing.policy",
                    ),
                ),
            ],
            options={
                "ordering": ["policy_name", "-number"],
                "constraints": [
                    models.UniqueConstraint(fields=("policy", "number"), name="policyversion_unique_number")
                ],
            },
        ),
        migrations.RunPython(record_current_versions, migrations.RunPython.noop),
    ]
