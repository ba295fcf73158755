from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0002_selection_categories_experiments"),
    ]

    operations = [
        migrations.AlterField(
            model_name="requestrecord",
            name="status",
            field=models.CharField(
                choices=[
                    ("answered", "Answered"),
                    ("failed", "Every tier failed"),
                    ("cancelled", "Client went away"),
                    ("refused", "Refused"),
                ],
                max_length=20,
            ),
        ),
    ]
