"""Test settings: the real settings, with tasks run eagerly and fast password hashing.

`DATABASE_URL` and `REDIS_URL` still apply, so CI runs the suite on PostgreSQL and Redis.
"""

from cascadeops.local_state import prepare

prepare()  # the test run's var/ files, as manage.py makes them

from cascadeops.settings import *  # noqa: E402, F403
from cascadeops.settings import VAR_DIR  # noqa: E402

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Django's test client logs in without a request, which django-axes refuses; the lockout
# tests turn it on (tests/test_admin_lockout.py).
AXES_ENABLED = False
# Throttle counts live in the shared cache and user ids repeat from test to test: without
# room, one test's calls would throttle the next. tests/test_throttles.py sets its own rates.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CASCADEOPS_RECORD_SPOOL_DIR = VAR_DIR / "test-record-spool"
CASCADEOPS_RECORD_STREAM = "cascadeops:test:records"
# Close connections at the end of each request, so the live-server threads leave none
# open when the test database is dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
