"""Operators edit the model registry, policies (tiers and task rules inline) and API keys here."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billing.pricing.book import Prices
from common.admin import ViewAndDeleteAdmin, ViewOnlyAdmin
from routing.config.prices import endpoint_prices, endpoint_prices_show
from routing.limits.breakers import breaker_states_by_id
from routing.models import (
    ApiKey,
    ModelEndpoint,
    Policy,
    PolicyTier,
    PolicyVersion,
    QualityLabel,
    RecordDeadLetter,
    RequestAttempt,
    RequestRecord,
    ScorerVersion,
    ShadowEvaluation,
    TaskRule,
)
from routing.policies import services, versions
from routing.policies.services import MIN_TIERS, TIER_FIELDS, RuleSpec, TierSpec
from routing.quality import learning
from routing.selection_admin import ExperimentAdmin, TaskCategoryAdmin  # noqa: F401  (registers them)

RULE_FIELDS = ("position", "category", "pattern", "first_tier")

if TYPE_CHECKING:
    ModelEndpointFormBase = forms.ModelForm[ModelEndpoint]
    ModelEndpointAdminBase = admin.ModelAdmin[ModelEndpoint]
    TierFormSetBase = BaseInlineFormSet[PolicyTier, Policy]
    TaskRuleFormSetBase = BaseInlineFormSet[TaskRule, Policy]
    PolicyTierInlineBase = admin.TabularInline[PolicyTier, Policy]
    TaskRuleInlineBase = admin.TabularInline[TaskRule, Policy]
    PolicyAdminBase = admin.ModelAdmin[Policy]
    ApiKeyAdminBase = admin.ModelAdmin[ApiKey]
    RequestAttemptInlineBase = admin.TabularInline[RequestAttempt, RequestRecord]
    RequestRecordAdminBase = admin.ModelAdmin[RequestRecord]
    ScorerVersionAdminBase = admin.ModelAdmin[ScorerVersion]
else:  # generic only in django-stubs: Django's classes take no type arguments at run time
    ModelEndpointFormBase = forms.ModelForm
    TierFormSetBase = TaskRuleFormSetBase = BaseInlineFormSet
    ModelEndpointAdminBase = PolicyAdminBase = ApiKeyAdminBase = admin.ModelAdmin
    RequestRecordAdminBase = ScorerVersionAdminBase = admin.ModelAdmin
    PolicyTierInlineBase = TaskRuleInlineBase = RequestAttemptInlineBase = admin.TabularInline


# The breaker state of each listed endpoint, read once per change-list page.
_listed_breakers: ContextVar[dict[int, str] | None] = ContextVar("listed_breakers", default=None)


class ModelEndpointForm(ModelEndpointFormBase):
    """An endpoint cannot stand in for itself while its breaker is open.

    Its price fields start at the price book's price in force, so a price is written
    (from now) only when it is changed here; see docs/billing.md#price-book.
    """

    class Meta:
        model = ModelEndpoint
        fields = ["fallback_endpoint"]  # the admin adds the fieldsets' fields

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        instance = kwargs.get("instance")
        if instance is not None and instance.pk is not None:
            endpoint_prices_show(instance)  # the columns may be older than a scheduled price
        super().__init__(*args, **kwargs)

    def clean_fallback_endpoint(self) -> ModelEndpoint | None:
        fallback: ModelEndpoint | None = self.cleaned_data.get("fallback_endpoint")
        if fallback is not None and self.instance.pk is not None and fallback.pk == self.instance.pk:
            raise ValidationError("An endpoint cannot be its own fallback.")
        return fallback


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(ModelEndpointAdminBase):
    form = ModelEndpointForm
    list_display = [
        "name",
        "display_name",
        "provider_kind",
        "model_id",
        "price_in_force",
        "next_price",
        "fallback_endpoint",
        "breaker",
        "enabled",
    ]
    list_filter = ["provider_kind", "enabled"]
    list_select_related = ["fallback_endpoint"]
    search_fields = ["name", "display_name", "model_id"]
    readonly_fields = ["price_in_force", "next_price"]
    fieldsets = [
        (None, {"fields": ["name", "display_name", "provider_kind", "kind", "model_id", "enabled"]}),
        ("Connection", {"fields": ["base_url", "credentials_env", "options"]}),
        (
            "Prices (USD per 1M tokens)",
            {
                "fields": [
                    "price_in_force",
                    "next_price",
                    "input_price_per_m",
                    "output_price_per_m",
                    "cached_input_price_per_m",
                ],
                "description": (
                    "The price book holds the prices (Billing → Price book entries, where future prices are "
                    "scheduled). Changing a price here adds an entry in force from now; saving other fields "
                    "leaves the prices alone."
                ),
            },
        ),
        (
            "Model",
            {
                "fields": [
                    "context_window",
                    "max_tokens",
                    "temperature",
                    "typical_latency_ms",
                    "quality_prior",
                    ("supports_tools", "supports_json", "supports_images"),
                ],
                "description": "Selection skips this model's tier for a request it cannot hold or serve "
                "(docs/selection.md).",
            },
        ),
        (
            "Resilience",
            {
                "fields": [
                    "connect_timeout_s",
                    "read_timeout_s",
                    "max_retries",
                    "breaker_failure_rate",
                    "breaker_min_requests",
                    "breaker_window_s",
                    "breaker_open_s",
                    "fallback_endpoint",
                ],
                "description": (
                    "Retries apply to timeouts and unavailable providers only. The breaker opens when at least "
                    "the minimum number of calls in the window failed at the failure rate or more; after the "
                    "open time one trial call decides whether it closes. While it is open, the fallback "
                    "endpoint answers in this one's place, or the tier is skipped."
                ),
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelEndpoint]:
        return super().get_queryset(request).prefetch_related("prices")

    @admin.display(description="price in force (in/out per 1M)")
    def price_in_force(self, endpoint: ModelEndpoint) -> str:
        return _price_label(endpoint_prices(endpoint).in_force)

    @admin.display(description="next price")
    def next_price(self, endpoint: ModelEndpoint) -> str:
        return _price_label(endpoint_prices(endpoint).next, since=True)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # One breaker read for the whole page, rendered before the states are dropped.
        token = _listed_breakers.set(breaker_states_by_id(ModelEndpoint.objects.values_list("id", flat=True)))
        try:
            response = super().changelist_view(request, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
            return response
        finally:
            _listed_breakers.reset(token)

    @admin.display(description="breaker")
    def breaker(self, endpoint: ModelEndpoint) -> str:
        """The live breaker state ("—" when the shared store could not be read)."""
        states = _listed_breakers.get() or {}
        return states.get(endpoint.pk, "—").replace("_", "-")


def _price_label(prices: Prices | None, *, since: bool = False) -> str:
    """`$in / $out` (and the cached input price), with the start of a scheduled entry; "—" for none."""
    if prices is None:
        return "—"
    label = f"${prices.input_per_m:.6f} / ${prices.output_per_m:.6f}"
    if prices.cached_input_per_m is not None:
        label += f" (cached ${prices.cached_input_per_m:.6f})"
    return f"{label} from {prices.effective_from:%Y-%m-%d %H:%M %Z}" if since else label


def _kept_rows(formset: BaseInlineFormSet[Any, Policy], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The cleaned rows that stay (filled in and not marked for deletion), with `fields` only."""
    rows = [form.cleaned_data for form in formset.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
    return [{field: row[field] for field in fields if field in row} for row in rows]


class TierFormSet(TierFormSetBase):
    """The tiers are checked as a whole by `policy_validate`, as the REST API checks them."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # each tier's own field errors first
        tiers = [{**row, "peers": list(row.get("peers", ()))} for row in _kept_rows(self, TIER_FIELDS)]
        try:
            services.policy_validate(tiers=cast(list[TierSpec], tiers), rules=None)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from exc


class TaskRuleFormSet(TaskRuleFormSetBase):
    """Task rules are checked by `policy_validate` too; `first_tier` is not: the tiers may change alongside."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        rules = _kept_rows(self, RULE_FIELDS)
        try:
            services.policy_validate(tiers=None, rules=cast(list[RuleSpec], rules))
        except ValidationError as exc:
            raise ValidationError(exc.messages) from exc


class PolicyTierInline(PolicyTierInlineBase):
    model = PolicyTier
    formset = TierFormSet
    extra = 0
    min_num = MIN_TIERS
    fields = TIER_FIELDS
    autocomplete_fields = ["peers", "judge"]


class TaskRuleInline(TaskRuleInlineBase):
    model = TaskRule
    formset = TaskRuleFormSet
    extra = 0
    fields = RULE_FIELDS


@admin.register(Policy)
class PolicyAdmin(PolicyAdminBase):
    list_display = ["name", "version", "scorer", "max_escalations", "optimisation_goal", "enabled", "updated"]
    list_filter = ["enabled", "scorer", "optimisation_goal"]
    search_fields = ["name", "description"]
    readonly_fields = ["version", "version_history", "created", "updated"]
    inlines = [PolicyTierInline, TaskRuleInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "description",
                    "enabled",
                    "scorer",
                    "max_escalations",
                    "short_prompt_tokens",
                    "optimisation_goal",
                    "latency_budget_ms",
                    "sample_rate",
                    "shadow_rate",
                    "router_threshold",
                    "version",
                    "version_history",
                    "created",
                    "updated",
                ]
            },
        ),
        (
            "Caching",
            {
                "fields": [
                    "cache_ttl_s",
                    "semantic_cache",
                    "semantic_threshold",
                    "semantic_multi_turn",
                    "semantic_verify_rate",
                ],
                "description": (
                    "Exact-match answers are served for the cache lifetime (0: off). The semantic cache also "
                    "answers prompts whose embedding is at least the threshold close to an earlier one, and "
                    "re-asks the model for the verify rate's share of those hits to measure false hits."
                ),
            },
        ),
        (
            "Chat API",
            {
                "fields": ["unknown_fields", "tools_first_tier", "embeddings_endpoint"],
                "description": (
                    "Request fields the API does not know are refused, or passed to OpenAI-compatible providers. "
                    "Requests with tools can start on a stronger tier. /v1/embeddings goes to the embeddings "
                    "endpoint (see docs/api.md)."
                ),
            },
        ),
        (
            "Request log",
            {
                "fields": ["store_text", "text_retention_days", "text_redact_patterns"],
                "description": (
                    "Every request is in the request log with its attempts. Keeping its prompt and each answer "
                    "too is off by default: text is redacted with these patterns before it is stored, and "
                    "deleted after the retention (docs/request-log.md)."
                ),
            },
        ),
    ]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The policy row is saved before its tiers and rules: the version is stored once they are."""
        super().save_related(request, form, formsets, change)
        versions.policy_version_record(policy=form.instance)

    @admin.display(description="versions")
    def version_history(self, policy: Policy) -> str:
        url = reverse("admin:routing_policyversion_changelist") + f"?policy__id__exact={policy.pk}"
        return format_html('<a href="{}">Every stored version, to compare and restore</a>', url)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ViewOnlyAdmin):
    """Stored policy versions: read-only; compare two, or restore one as a new version."""

    list_display = ["policy_name", "number", "author", "source", "created", "restored_from", "compare_previous"]
    list_filter = ["policy", "source"]
    search_fields = ["policy_name", "author"]
    actions = ["compare", "restore"]
    fields = ["policy", "policy_name", "number", "author", "source", "created", "restored_from", "changes", "snapshot"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "changes"]

    def get_urls(self) -> list[URLPattern]:
        compare = self.admin_site.admin_view(self.compare_view)
        return [path("compare/", compare, name="routing_policyversion_compare"), *super().get_urls()]

    def has_restore_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_policy")

    @admin.display(description="changes from the previous version")
    def changes(self, version: PolicyVersion) -> str:
        previous = _previous_version(version)
        return _diff_table(versions.snapshot_diff(previous.snapshot if previous else None, version.snapshot))

    def get_queryset(self, request: HttpRequest) -> QuerySet[PolicyVersion]:
        # Each row's previous version in the page's one query, for the compare links.
        rows: QuerySet[PolicyVersion] = super().get_queryset(request)
        earlier = PolicyVersion.objects.filter(policy_id=OuterRef("policy_id"), number__lt=OuterRef("number"))
        earlier = earlier.order_by("-number")
        previous_pk, previous_number = Subquery(earlier.values("pk")[:1]), Subquery(earlier.values("number")[:1])
        return rows.annotate(previous_pk=previous_pk, previous_number=previous_number)

    @admin.display(description="compare")
    def compare_previous(self, version: PolicyVersion) -> str:
        previous_pk = getattr(version, "previous_pk", None)
        if previous_pk is None:
            return "—"
        url = reverse("admin:routing_policyversion_compare") + f"?a={previous_pk}&b={version.pk}"
        return format_html('<a href="{}">with v{}</a>', url, getattr(version, "previous_number", "?"))

    @admin.action(description="Compare the two selected versions")
    def compare(self, request: HttpRequest, queryset: QuerySet[PolicyVersion]) -> HttpResponse | None:
        chosen = sorted(queryset, key=lambda v: (v.policy_name, v.number))
        if len(chosen) != 2:
            self.message_user(request, "Select exactly two versions to compare.", messages.ERROR)
            return None
        url = reverse("admin:routing_policyversion_compare") + f"?a={chosen[0].pk}&b={chosen[1].pk}"
        return HttpResponseRedirect(url)

    @admin.action(description="Restore the selected version (as a new version)", permissions=["restore"])
    def restore(self, request: HttpRequest, queryset: QuerySet[PolicyVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select one version to restore.", messages.ERROR)
            return
        chosen = queryset.get()
        try:
            restored = versions.policy_version_restore(version=chosen)
        except ValidationError as exc:
            self.message_user(request, f"{chosen} was not restored: {' '.join(exc.messages)}", messages.ERROR)
            return
        self.message_user(request, f"{chosen} restored as {restored}.", messages.SUCCESS)

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        before = get_object_or_404(PolicyVersion, pk=request.GET.get("a", "").strip() or 0)
        after = get_object_or_404(PolicyVersion, pk=request.GET.get("b", "").strip() or 0)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{before} → {after}",
            "before": before,
            "after": after,
            "rows": versions.snapshot_diff(before.snapshot, after.snapshot),
        }
        return TemplateResponse(request, "routing/policy_version_compare.html", context)


def _previous_version(version: PolicyVersion) -> PolicyVersion | None:
    if version.policy_id is None:
        return None
    earlier = PolicyVersion.objects.filter(policy_id=version.policy_id, number__lt=version.number)
    return earlier.order_by("-number").first()


def _diff_table(rows: list[tuple[str, Any, Any]]) -> str:
    if not rows:
        return "no change"
    body = format_html_join(
        "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", ((path, _shown(a), _shown(b)) for path, a, b in rows)
    )
    return format_html("<table><tr><th>setting</th><th>before</th><th>after</th></tr>{}</table>", body)


def _shown(value: Any) -> str:
    return "—" if value is None else str(value)


@admin.register(ApiKey)
class ApiKeyAdmin(ApiKeyAdminBase):
    list_display = ["name", "prefix", "team", "app", "policy", "expires_at", "revoked_at", "created"]
    list_filter = ["team", "policy"]
    search_fields = ["name", "prefix", "team", "app"]
    readonly_fields = ["prefix", "revoked_at", "created"]
    fieldsets = [
        (None, {"fields": ["name", "team", "app", "policy", "expires_at", "prefix", "revoked_at", "created"]}),
        (
            "Rate limits",
            {
                "fields": ["requests_per_minute", "tokens_per_minute"],
                "description": "Per minute, shared by every worker; empty: no limit. Over it: 429 with Retry-After.",
            },
        ),
    ]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        plaintext = ApiKey.generate()
        obj.set_key(plaintext)
        super().save_model(request, obj, form, change)
        messages.warning(
            request,
            f"The new API key is {plaintext} — copy it now: it is stored only as a hash and will not be shown again.",
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


ATTEMPT_INLINE_FIELDS = (
    "position",
    "tier",
    "model",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency_ms",
    "score",
    "error",
)


class RequestAttemptInline(RequestAttemptInlineBase):
    model = RequestAttempt
    extra = 0
    can_delete = False
    fields = ATTEMPT_INLINE_FIELDS
    readonly_fields = ATTEMPT_INLINE_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RecordDeadLetter)
class RecordDeadLetterAdmin(ViewAndDeleteAdmin):
    """Records the flusher could not store, with why: fix and replay by hand, then delete."""

    list_display = ["record_id", "record_created", "dead_lettered", "error"]
    search_fields = ["record_id", "entry", "error"]
    date_hierarchy = "dead_lettered"


@admin.register(RequestRecord)
class RequestRecordAdmin(RequestRecordAdminBase):
    """Records are written by the flusher only; the admin shows them."""

    list_display = [
        "id",
        "created",
        "team",
        "app",
        "policy_name",
        "final_model",
        "escalated",
        "cost",
        "latency_ms",
        "status",
    ]
    list_filter = ["status", "escalated", "policy_name", "team", "task_category"]
    search_fields = ["id", "app", "end_user"]
    date_hierarchy = "created"
    inlines = [RequestAttemptInline]
    list_select_related = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*(f.name for f in self.model._meta.fields), "routed_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="routed by")
    def routed_by(self, record: RequestRecord) -> str:
        """The stored policy version that routed the request, whole."""
        version = versions.policy_version_for_record(record)
        if version is None:
            return "— (routed before versions were kept)"
        url = reverse("admin:routing_policyversion_change", args=[version.pk])
        return format_html('<a href="{}">{}</a>', url, version)


# --- Quality loop --------------------------------------------------------------------------


@admin.register(QualityLabel)
class QualityLabelAdmin(ViewAndDeleteAdmin):
    list_display = ["record", "source", "value", "created", "updated"]
    list_filter = ["source"]
    search_fields = ["record__id", "comment"]
    date_hierarchy = "created"


@admin.register(ShadowEvaluation)
class ShadowEvaluationAdmin(ViewAndDeleteAdmin):
    """Shadow calls and what they cost; never part of the requests' own cost."""

    list_display = ["record", "status", "judge", "acceptable", "reference_model", "cost", "created"]
    list_filter = ["status", "judge", "acceptable"]
    search_fields = ["record__id"]
    date_hierarchy = "created"


@admin.register(ScorerVersion)
class ScorerVersionAdmin(ScorerVersionAdminBase):
    """Trained scorers; tick `active` to score with a version (one per policy and kind)."""

    list_display = ["policy", "version", "kind", "n_labels", "trained_at", "active"]
    list_filter = ["kind", "active", "policy"]
    readonly_fields = ["policy", "version", "kind", "model", "metrics", "n_labels", "trained_at"]
    fields = ["policy", "version", "kind", "active", "n_labels", "metrics", "trained_at", "model"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training (tuning, or routing.quality.learning)

    def save_model(self, request: HttpRequest, obj: ScorerVersion, form: Any, change: bool) -> None:
        if obj.active:
            learning.scorer_version_activate(version=obj)
        else:
            super().save_model(request, obj, form, change)
