"""Where a configuration change came from."""

from django.db import models


class AuditSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "Management API"
    WEB = "web", "Dashboard page"
    BEAT = "beat", "Background job"
    COMMAND = "command", "Management command"
    SYSTEM = "system", "Other (shell, migration, test)"
