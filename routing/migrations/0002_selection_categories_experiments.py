"""Selection by goal, task categories with their ladders, A/B experiments; their default data."""

from typing import Any

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import routing.models.categories
import routing.models.validators

# The fixed list as it stood, now rows operators can edit, plus a code category.
DEFAULT_CATEGORIES: tuple[tuple[str, str, str], ...] = (
    (
        "order_status",
        r"\A(?=[\s\S]*\b(order|tracking|shipment|delivery)\b)(?=[\s\S]*\b(status|where|track)\b)",
        "Where an order is.",
    ),
    (
        "math",
        r"\A(?=[\s\S]*\d)[\s\S]*\b(?:how (?:many|much|long|far|fast|old|often|tall|high)"
        r"|calculate|compute|total|combined|altogether|average|sum|difference|remaining"
        r"|what percent(?:age)?|what (?:score|floor|time|number|amount|age|distance))\b",
        "Word problems with numbers.",
    ),
    ("comparison", r"\b(compare|versus|vs\.?|difference between|better than)\b", "Two things side by side."),
    ("summarization", r"\b(summari[sz]e|tl;?dr|summary)\b", "Shorten a text."),
    ("translation", r"\btranslat(e|ion)\b|\bin (french|spanish|german|japanese)\b", "From one language to another."),
    (
        "faq",
        r"\b(return policy|refunds?|returns?|shipping (cost|fee|time)s?|payment methods?"
        r"|cancel|my account|password|opening hours|contact (you|support)|how (do|can) i)\b",
        "Questions the help pages answer.",
    ),
    (
        "product_search",
        r"\b(do you (have|sell|carry)|in stock|looking for|search(ing)? for|find me|show me|available)\b",
        "Looking for a product.",
    ),
    ("recommendation", r"\b(recommend\w*|suggest\w*|similar to|what should i (read|watch|buy))\b", "What to pick."),
    (
        "discussion",
        r"\b(what do you think|opinion|discuss|why (is|does|did)|explain|theor(y|ies)|analy[sz]e|meaning of)\b",
        "Open questions.",
    ),
    ("greeting", r"^\s*(hi|hello|hey|good (morning|afternoon|evening))\b[^\n]{0,40}$", "A short hello."),
)

CODE_PATTERNS = "\n".join(
    (
        r"```",
        r"\b(def|class|function|fn|func|public static|#include|import)\s+\w+",
        r"\b(python|javascript|typescript|java|rust|golang|c\+\+|sql|bash|regex)\b.*\b(code|function|script|query|bug|error)\b",
        r"\b(stack ?trace|traceback|segfault|compile error|syntax error|unit tests?|refactor)\b",
    )
)

# (goal, cost, quality, latency, fit): see docs/selection.md for what each term measures.
DEFAULT_WEIGHTS = (
    ("cost", 1.0, 0.1, 0.05, 0.05),
    ("balanced", 0.5, 0.3, 0.1, 0.1),
    ("quality", 0.1, 1.0, 0.05, 0.2),
    ("latency", 0.1, 0.1, 1.0, 0.05),
)


def add_defaults(apps: Any, schema_editor: Any) -> None:
    category = apps.get_model("routing", "TaskCategory")
    for position, (name, pattern, description) in enumerate(DEFAULT_CATEGORIES, start=1):
        category.objects.get_or_create(
            name=name, defaults={"position": position * 10, "patterns": pattern, "description": description}
        )
    category.objects.get_or_create(
        name="code",
        defaults={"position": 5, "patterns": CODE_PATTERNS, "description": "Writing, reading or fixing code."},
    )
    weights = apps.get_model("routing", "GoalWeights")
    for goal, cost, quality, latency, fit in DEFAULT_WEIGHTS:
        weights.objects.get_or_create(
            goal=goal, defaults={"cost": cost, "quality": quality, "latency": latency, "fit": fit}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="GoalWeights",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "goal",
                    models.CharField(
                        choices=[
                            ("cost", "Lowest cost"),
                            ("balanced", "Balanced"),
                            ("quality", "Highest quality"),
                            ("latency", "Lowest latency"),
                        ],
                        max_length=20,
                        unique=True,
                    ),
                ),
                (
                    "cost",
                    models.FloatField(
                        default=1.0,
                        validators=[routing.models.validators.finite, django.core.validators.MinValueValidator(0.0)],
                    ),
                ),
                (
                    "quality",
                    models.FloatField(
                        default=1.0,
                        validators=[routing.models.validators.finite, django.core.validators.MinValueValidator(0.0)],
                    ),
                ),
                (
                    "latency",
                    models.FloatField(
                        default=1.0,
                        validators=[routing.models.validators.finite, django.core.validators.MinValueValidator(0.0)],
                    ),
                ),
                (
                    "fit",
                    models.FloatField(
                        default=1.0,
                        validators=[routing.models.validators.finite, django.core.validators.MinValueValidator(0.0)],
                        verbose_name="task fit",
                    ),
                ),
                ("updated", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "goal weights",
                "verbose_name_plural": "goal weights",
                "ordering": ["goal"],
            },
        ),
        migrations.CreateModel(
            name="LadderTier",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("position", models.PositiveSmallIntegerField()),
                (
                    "threshold",
                    models.FloatField(
                        default=0.7,
                        help_text="An answer scored below this escalates to the next rung (ignored on the last).",
                        validators=[
                            routing.models.validators.finite,
                            django.core.validators.MinValueValidator(0.0),
                            django.core.validators.MaxValueValidator(1.0),
                        ],
                    ),
                ),
                (
                    "max_tokens",
                    models.PositiveIntegerField(
                        blank=True, help_text="Token limit for this rung; empty: the endpoint's.", null=True
                    ),
                ),
            ],
            options={
                "ordering": ["ladder", "position"],
            },
        ),
        migrations.CreateModel(
            name="TaskCategory",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        max_length=50,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, '.', '_' and '-'."
                            )
                        ],
                    ),
                ),
                ("description", models.TextField(blank=True)),
                ("position", models.PositiveSmallIntegerField(default=100, help_text="Lower is tried first.")),
                (
                    "keywords",
                    models.TextField(blank=True, help_text="Words or phrases, one per line, matched as whole words."),
                ),
                (
                    "patterns",
                    models.TextField(
                        blank=True,
                        help_text="Regular expressions, one per line, case-insensitive.",
                        validators=[routing.models.categories.validate_regex_lines],
                    ),
                ),
                (
                    "examples",
                    models.TextField(
                        blank=True,
                        help_text="Example prompts, one per line, matched by meaning (embedding similarity).",
                    ),
                ),
                (
                    "similarity_threshold",
                    models.FloatField(
                        default=0.6,
                        help_text="Cosine similarity to an example that names it.",
                        validators=[
                            routing.models.validators.finite,
                            django.core.validators.MinValueValidator(0.0),
                            django.core.validators.MaxValueValidator(1.0),
                        ],
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name_plural": "task categories",
                "ordering": ["position", "name"],
            },
        ),
        migrations.AddField(
            model_name="modelendpoint",
            name="supports_images",
            field=models.BooleanField(default=False, help_text="Reads images in the messages."),
        ),
        migrations.AddField(
            model_name="modelendpoint",
            name="supports_json",
            field=models.BooleanField(default=True, help_text="Can be asked for JSON output (response_format)."),
        ),
        migrations.AddField(
            model_name="modelendpoint",
            name="supports_tools",
            field=models.BooleanField(default=True, help_text="Takes tool (function) definitions."),
        ),
        migrations.AddField(
            model_name="policy",
            name="latency_budget_ms",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Tiers whose measured p95 latency is over this are skipped (empty: no budget).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="requestrecord",
            name="selection",
            field=models.JSONField(
                blank=True, default=dict, help_text="Why the request started where it did: constraints, weights, skips."
            ),
        ),
        migrations.AlterField(
            model_name="policy",
            name="optimisation_goal",
            field=models.CharField(
                choices=[
                    ("cost", "Lowest cost"),
                    ("balanced", "Balanced"),
                    ("quality", "Highest quality"),
                    ("latency", "Lowest latency"),
                ],
                default="balanced",
                help_text="Which weights rank the tiers a request may start on (see Goal weights).",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="taskrule",
            name="category",
            field=models.CharField(max_length=50),
        ),
        migrations.CreateModel(
            name="CategoryLadder",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "policy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="ladders", to="routing.policy"
                    ),
                ),
            ],
            options={
                "ordering": ["policy", "category"],
            },
        ),
        migrations.CreateModel(
            name="EndpointMeasure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("category", models.CharField(blank=True, max_length=50)),
                ("p95_latency_ms", models.FloatField(blank=True, null=True)),
                ("latency_samples", models.PositiveIntegerField(default=0)),
                (
                    "quality",
                    models.FloatField(
                        blank=True,
                        null=True,
                        validators=[
                            routing.models.validators.finite,
                            django.core.validators.MinValueValidator(0.0),
                            django.core.validators.MaxValueValidator(1.0),
                        ],
                    ),
                ),
                ("quality_samples", models.PositiveIntegerField(default=0)),
                ("updated", models.DateTimeField(auto_now=True)),
                (
                    "endpoint",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="measures", to="routing.modelendpoint"
                    ),
                ),
            ],
            options={
                "ordering": ["endpoint", "category"],
            },
        ),
        migrations.CreateModel(
            name="Experiment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("description", models.TextField(blank=True)),
                ("team", models.CharField(blank=True, help_text="Or: every key of this team.", max_length=100)),
                (
                    "status",
                    models.CharField(
                        choices=[("running", "Running"), ("ended", "Ended")], default="running", max_length=10
                    ),
                ),
                (
                    "min_samples",
                    models.PositiveIntegerField(
                        default=100,
                        help_text="Requests each arm needs before the comparison calls a difference.",
                        validators=[django.core.validators.MinValueValidator(1)],
                    ),
                ),
                ("started", models.DateTimeField(auto_now_add=True)),
                ("ended", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "api_key",
                    models.ForeignKey(
                        blank=True,
                        help_text="The key whose traffic.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="experiments",
                        to="routing.apikey",
                    ),
                ),
            ],
            options={
                "ordering": ["-started"],
            },
        ),
        migrations.CreateModel(
            name="ExperimentArm",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
                (
                    "policy_version",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="A stored version of the policy to route with (empty: its current one).",
                        null=True,
                    ),
                ),
                (
                    "weight",
                    models.PositiveIntegerField(default=1, validators=[django.core.validators.MinValueValidator(1)]),
                ),
                (
                    "experiment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="arms", to="routing.experiment"
                    ),
                ),
                (
                    "policy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="experiment_arms", to="routing.policy"
                    ),
                ),
            ],
            options={
                "ordering": ["experiment", "name"],
            },
        ),
        migrations.AddField(
            model_name="experiment",
            name="winner",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="routing.experimentarm",
            ),
        ),
        migrations.AddField(
            model_name="requestrecord",
            name="experiment_arm",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="records",
                to="routing.experimentarm",
            ),
        ),
        migrations.AddField(
            model_name="laddertier",
            name="endpoint",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="ladder_tiers", to="routing.modelendpoint"
            ),
        ),
        migrations.AddField(
            model_name="laddertier",
            name="ladder",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="tiers", to="routing.categoryladder"
            ),
        ),
        migrations.AddField(
            model_name="categoryladder",
            name="category",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="ladders", to="routing.taskcategory"
            ),
        ),
        migrations.AddConstraint(
            model_name="endpointmeasure",
            constraint=models.UniqueConstraint(fields=("endpoint", "category"), name="endpointmeasure_unique_category"),
        ),
        migrations.AddConstraint(
            model_name="experimentarm",
            constraint=models.UniqueConstraint(fields=("experiment", "name"), name="experimentarm_unique_name"),
        ),
        migrations.AddConstraint(
            model_name="laddertier",
            constraint=models.UniqueConstraint(fields=("ladder", "position"), name="laddertier_unique_position"),
        ),
        migrations.AddConstraint(
            model_name="categoryladder",
            constraint=models.UniqueConstraint(fields=("policy", "category"), name="categoryladder_unique_category"),
        ),
        migrations.RunPython(add_defaults, migrations.RunPython.noop),
    ]
