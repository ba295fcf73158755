from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        # Rollups from stored request records; alert events from budget alerts.
        from dashboard.alerts import receivers as alert_receivers  # noqa: F401
        from dashboard.rollups import receivers as rollup_receivers  # noqa: F401
