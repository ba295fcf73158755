from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing import permissions  # noqa: F401  (post_migrate: the finance and operator groups)
        from billing.models import Budget, PriceBookEntry
        from common.audit.services import track

        track(Budget)
        track(PriceBookEntry)
