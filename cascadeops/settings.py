"""Settings for CascadeOps, read from the environment.

With no environment at all this runs in *embedded mode*: a SQLite file, in-process cache
and channel layer, a file-system Celery broker and a spool directory for request records,
so `make run` works on a laptop with nothing but Python. Setting `DATABASE_URL` and
`REDIS_URL` switches every shared piece to PostgreSQL and Redis (production mode).
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from csp.constants import NONCE, SELF
from django.core.exceptions import ImproperlyConfigured

from cascadeops import local_state

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# Embedded mode keeps its state here: the database, the broker's files, the record spool.
# `cascadeops.local_state.prepare()` (run by manage.py, ASGI and Celery) makes it.
VAR_DIR = local_state.var_dir()


def _local_secret_key() -> str:
    """The key `local_state.prepare()` made for this checkout, so embedded mode needs no configuration."""
    path = local_state.secret_key_file()
    return path.read_text().strip() if path.exists() else ""


# Production mode is asked for explicitly (a PostgreSQL database alone may be a developer's):
# it refuses to start on the key generated into var/, which each host would make its own.
PRODUCTION = env.bool("CASCADEOPS_PRODUCTION", default=False)
if PRODUCTION and not env("SECRET_KEY", default=""):
    raise ImproperlyConfigured(
        "CASCADEOPS_PRODUCTION is set but SECRET_KEY is not: set SECRET_KEY to a long random string, "
        "the same on every host (e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
SECRET_KEY = env("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS. Off unless set, so a laptop on plain HTTP works; the README's Production deployment
# section sets them all (and `manage.py check --deploy` is then clean).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Prometheus usually scrapes over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[r"^metrics$"])
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# Behind a proxy that ends TLS: `SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https`. Only
# if the proxy always sets (or strips) that header, or clients could claim HTTPS themselves.
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "channels",
    "django_celery_beat",
    "axes",
    "common.audit",
    "billing",
    "routing",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Remembers who asks, for the audit entries of the changes the view makes.
    "common.audit.context.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy (django-csp). Pages load scripts only from here; the two inline
# chart scripts carry the request's nonce. Plotly sets inline styles and draws data: images.
# The Swagger UI of /api/docs/ is served from here too (drf-spectacular-sidecar).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": ["'none'"],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [SELF],
    },
}

# django-axes: a username tried from one address fails this many times, then that pair is
# refused for the cool-off (a success before then starts the count again).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

ROOT_URLCONF = "cascadeops.urls"
ASGI_APPLICATION = "cascadeops.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.navigation.navigation",
            ],
            # The number rule's filters; `common` is no app, so its library is named here.
            "libraries": {"numbers": "common.templatetags.numbers"},
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cascadeops.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one file: WAL lets readers run beside
    # the one writer, and IMMEDIATE transactions wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, so the live-server and flusher tests can share it; one per test
    # run, so two runs on one checkout do not drop each other's tables.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
EMBEDDED = not REDIS_URL
# Per process and event loop. A burst beyond it waits for a free connection, at most the timeout.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=200)
REDIS_POOL_TIMEOUT_S = env.float("REDIS_POOL_TIMEOUT_S", default=5.0)
# After a failed connection, how long each process skips Redis before trying again (fail fast).
REDIS_OUTAGE_COOLDOWN_S = env.float("REDIS_OUTAGE_COOLDOWN_S", default=2.0)
REDIS_CONNECT_TIMEOUT_S = env.float("REDIS_CONNECT_TIMEOUT_S", default=1.0)

# The web server's limits (`manage.py serve` runs uvicorn with them; cascadeops/server.py):
# each request's headers and body must arrive within this many seconds of its first byte...
CASCADEOPS_REQUEST_READ_TIMEOUT_SECONDS = env.float("CASCADEOPS_REQUEST_READ_TIMEOUT_SECONDS", default=30.0)
# ...an idle keep-alive connection is closed after this many seconds...
CASCADEOPS_KEEP_ALIVE_SECONDS = env.int("CASCADEOPS_KEEP_ALIVE_SECONDS", default=5)
# ...and beyond this many connections and requests in flight per web worker, new ones get a 503.
CASCADEOPS_MAX_CONCURRENCY = env.int("CASCADEOPS_MAX_CONCURRENCY", default=1000)

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: Redis (or any broker URL) in production; in embedded mode kombu's SQLAlchemy
# transport on a SQLite file that the web server, worker and beat share: transactional, and no
# broker server to run. (Not the filesystem transport: a reader can see a half-written message
# file and the worker dies on it.) docs/embedded.md weighs it against an embedded Redis.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
if CELERY_BROKER_URL.startswith("sqla+sqlite:"):
    # SQLite's lock wait, so a publish that meets the worker's claim waits instead of failing.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"connect_args": {"timeout": 30}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = env("TIME_ZONE", default="UTC")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
# Days and months of the ledger, budgets and reports start at midnight here.
BILLING_TIME_ZONE = env("BILLING_TIME_ZONE", default=TIME_ZONE)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # The charts' plotly.min.js, from the installed plotly package.
    "dashboard.plotly_bundle.PlotlyBundleFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Our own sign-in page; with no page asked for, each role lands on its own (dashboard.navigation).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:landing"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.DjangoModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "common.drf.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per user (or, signed out, per address), in the default cache: Redis in production.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("CASCADEOPS_API_THROTTLE_ANON", default="60/minute"),
        "user": env("CASCADEOPS_API_THROTTLE_USER", default="1200/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CascadeOps management API",
    "DESCRIPTION": "Everything the admin edits (endpoints, policies and their versions, keys, categories, "
    "experiments, budgets, the price book, alerts), request records and the audit trail.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # A policy's goal and the goal-weight rows share one choice set: one enum in the schema.
    "ENUM_NAME_OVERRIDES": {"OptimisationGoalEnum": "routing.choices.OptimisationGoal"},
    # Swagger UI from this server's static files: /api/docs/ works without the internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="cascadeops@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # httpx (alert webhooks) logs every request at INFO: one line per call is noise, not news.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- CascadeOps -------------------------------------------------------------------------
# A request body larger than this is answered 413 before it is parsed.
CASCADEOPS_MAX_REQUEST_BYTES = env.int("CASCADEOPS_MAX_REQUEST_BYTES", default=1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(CASCADEOPS_MAX_REQUEST_BYTES + 1, 2_621_440)
# How old a worker's view of policies and keys may get before it checks for a newer one.
CASCADEOPS_CONFIG_REFRESH_SECONDS = env.float("CASCADEOPS_CONFIG_REFRESH_SECONDS", default=0.5)
# Where request records wait for the flusher in embedded mode (Redis stream otherwise).
CASCADEOPS_RECORD_SPOOL_DIR = Path(env("CASCADEOPS_RECORD_SPOOL_DIR", default=str(VAR_DIR / "record-spool")))
# A record a crashed flusher had claimed is taken over after this many seconds.
CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS = env.float("CASCADEOPS_RECORD_CLAIM_TIMEOUT_SECONDS", default=30.0)
# A web worker appends its records to one spool segment and closes it (hands it to the
# flusher) once it is this many seconds old: the longest a record waits to be flushable.
CASCADEOPS_RECORD_SEGMENT_SECONDS = env.float("CASCADEOPS_RECORD_SEGMENT_SECONDS", default=0.5)
CASCADEOPS_RECORD_STREAM = env("CASCADEOPS_RECORD_STREAM", default="cascadeops:records")
# Redis key prefix of the circuit breakers: gateways sharing one Redis share breakers
# when they share this prefix.
CASCADEOPS_BREAKER_PREFIX = env("CASCADEOPS_BREAKER_PREFIX", default="cascadeops:breaker")
# The response cache (routing.cache.exact, routing.cache.semantic): Redis key prefix (gateways
# sharing a Redis and this prefix share cached answers), the in-process LRU's size in
# embedded mode, and how many recent prompt vectors each policy's semantic index searches.
CASCADEOPS_CACHE_PREFIX = env("CASCADEOPS_CACHE_PREFIX", default="cascadeops:cache")
CASCADEOPS_CACHE_MAX_ENTRIES = env.int("CASCADEOPS_CACHE_MAX_ENTRIES", default=10_000)
CASCADEOPS_SEMANTIC_INDEX_SIZE = env.int("CASCADEOPS_SEMANTIC_INDEX_SIZE", default=5_000)
# What deploying CascadeOps cost (USD); when set, finance reports show the months of
# savings that pay it back. Unset: no break-even figure.
CASCADEOPS_IMPLEMENTATION_COST_USD = env("CASCADEOPS_IMPLEMENTATION_COST_USD", cast=Decimal, default=None)
# Request log: how long kept prompts and answers of a deleted policy stay (a policy's own
# retention is `Policy.text_retention_days`), and how many rows a filtered page shows.
CASCADEOPS_TEXT_RETENTION_DAYS = env.int("CASCADEOPS_TEXT_RETENTION_DAYS", default=30)
CASCADEOPS_REQUEST_LOG_PAGE_SIZE = env.int("CASCADEOPS_REQUEST_LOG_PAGE_SIZE", default=50)
# Dashboard: how often open pages get new rollup values (one message per group per tick).
CASCADEOPS_DASHBOARD_TICK_SECONDS = env.float("CASCADEOPS_DASHBOARD_TICK_SECONDS", default=1.0)
# How often an open dashboard websocket asks again whether its user may still watch.
CASCADEOPS_DASHBOARD_RECHECK_SECONDS = env.float("CASCADEOPS_DASHBOARD_RECHECK_SECONDS", default=5.0)
# How long rollups are kept: minute rows feed the live charts and alert rules, hour rows
# the longer windows.
CASCADEOPS_ROLLUP_MINUTE_RETENTION_DAYS = env.int("CASCADEOPS_ROLLUP_MINUTE_RETENTION_DAYS", default=14)
CASCADEOPS_ROLLUP_HOUR_RETENTION_DAYS = env.int("CASCADEOPS_ROLLUP_HOUR_RETENTION_DAYS", default=400)
# Prometheus /metrics: every worker process counts in memory-mapped files in this directory
# (prometheus_client's multiprocess mode, which reads the variable when it is imported, so
# `local_state.prepare()` sets it before anything imports it); `serve` empties it when it starts.
CASCADEOPS_METRICS_DIR = local_state.metrics_dir()
# Who may read /metrics: a bearer token, or (sending no credentials) an address in these CIDRs.
CASCADEOPS_METRICS_TOKEN = env("CASCADEOPS_METRICS_TOKEN", default="")
CASCADEOPS_METRICS_ALLOW = env.list("CASCADEOPS_METRICS_ALLOW", default=["127.0.0.1/32", "::1/128"])
# On SIGTERM, in-flight requests get this long to finish before they are cancelled.
CASCADEOPS_SHUTDOWN_GRACE_SECONDS = env.float("CASCADEOPS_SHUTDOWN_GRACE_SECONDS", default=30.0)
# Provider credentials: a model endpoint's `credentials_env` may only name a variable with
# this prefix, or one listed here; operators cannot widen it (see routing/models/validators.py).
CASCADEOPS_CREDENTIALS_ENV_PREFIX = env("CASCADEOPS_CREDENTIALS_ENV_PREFIX", default="CASCADEOPS_PROVIDER_")
CASCADEOPS_CREDENTIALS_ENV_ALLOW = env.list("CASCADEOPS_CREDENTIALS_ENV_ALLOW", default=[])
# Where endpoints and webhooks may point (common/outbound.py): when set, only these host
# names and CIDRs; with DENY_PRIVATE, no private or loopback address either.
CASCADEOPS_OUTBOUND_ALLOW = env.list("CASCADEOPS_OUTBOUND_ALLOW", default=[])
CASCADEOPS_OUTBOUND_DENY_PRIVATE = env.bool("CASCADEOPS_OUTBOUND_DENY_PRIVATE", default=False)
# /v1: this many failed API keys from one client address within the window, and its
# further failures are answered 429 until the window ends (routing/limits/failed_keys.py).
CASCADEOPS_FAILED_KEY_LIMIT = env.int("CASCADEOPS_FAILED_KEY_LIMIT", default=20)
CASCADEOPS_FAILED_KEY_WINDOW_SECONDS = env.int("CASCADEOPS_FAILED_KEY_WINDOW_SECONDS", default=300)
