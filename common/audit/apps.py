from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "common.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from common.audit import receivers  # noqa: F401  (background jobs act as "beat")
