from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # Rollups from stored request records; alert events from budget alerts; configuration audited.
        from common.audit.services import track
        from dashboard.alerts import receivers as alert_receivers  # noqa: F401
        from dashboard.models import AlertRule, SlaTarget, TuningConfig
        from dashboard.rollups import receivers as rollup_receivers  # noqa: F401

        track(AlertRule)
        track(SlaTarget)
        track(TuningConfig)
