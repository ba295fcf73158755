"""Production settings: `check --deploy` is clean with the README's settings, and no key means no start."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = (
    "import django; django.setup(); from django.core.management import call_command; "
    "call_command('check', deploy=True, fail_level='WARNING')"
)
# The README's Production deployment section, minus what needs a server to exist.
PRODUCTION = {
    "CASCADEOPS_PRODUCTION": "1",
    "DATABASE_URL": "postgres://cascadeops:unused@db.invalid:5432/cascadeops",
    "ALLOWED_HOSTS": "gateway.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://gateway.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
}


def run_check(**environment: str) -> subprocess.CompletedProcess[str]:
    """The check in a process of its own, on the real settings module (never the test one)."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k not in ("SECRET_KEY", "DEBUG")}
    env.update(environment, DJANGO_SETTINGS_MODULE="cascadeops.settings")
    return subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_is_clean_with_the_documented_production_settings() -> None:
    result = run_check(**PRODUCTION, SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them() -> None:
    result = run_check(SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode != 0
    assert "security.W004" in result.stderr


def test_production_mode_refuses_to_start_without_a_secret_key() -> None:
    result = run_check(**PRODUCTION)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr
