from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Connect the receivers: configuration changes, the quality loop, semantic checks.
        from routing.cache import receivers as cache_receivers  # noqa: F401
        from routing.config import receivers as config_receivers  # noqa: F401
        from routing.policies import receivers as policy_receivers  # noqa: F401  (audit, versions)
        from routing.quality import receivers as quality_receivers  # noqa: F401
