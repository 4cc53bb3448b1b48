"""Sentinel settings: one module, every environment variable read near the top.

Nothing set      -> the embedded default (SQLite, local-memory cache, in-memory channel layer,
                    eager Celery, built-in mock provider).
DATABASE_URL /
REDIS_URL set    -> PostgreSQL (psycopg 3, connection pool) / Redis cache, channels-redis, real Celery.
SENTINEL_ENV=production -> the required values have no default; a missing or malformed one stops
                    boot with one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


class ConfigError(SystemExit):
    """A bad environment value: boot stops with one line, no traceback."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"sentinel: configuration error: {variable}: {problem}")


env = environ.Env()
if (BASE_DIR / ".env").is_file():  # optional; the real environment wins
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = env.str(name, default=None)
    if value is None or value == "":
        if required:
            raise ConfigError(name, "is required when SENTINEL_ENV=production")
        return default
    return value


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default=None)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = env.str(name, default=None)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=None)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true/false, got {raw!r}")


def _list(name: str, default: list[str]) -> list[str]:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _choice(name: str, default: str, choices: set[str]) -> str:
    value = (_str(name, default) or default).strip().lower()
    if value not in choices:
        raise ConfigError(name, f"expected one of {', '.join(sorted(choices))}, got {value!r}")
    return value


def _database(url: str) -> dict:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        try:
            port = parts.port
        except ValueError:
            raise ConfigError("DATABASE_URL", "the port is not a number") from None
        if not parts.hostname or not name:
            raise ConfigError("DATABASE_URL", "expected postgres://USER[:PASSWORD]@HOST[:PORT]/NAME")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        pool_max = _int("DATABASE_POOL_MAX_SIZE", 20, minimum=1)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or 5432),
            # Under ASGI, CONN_MAX_AGE piles connections up per thread ("too many clients");
            # psycopg's pool bounds them per process.
            "CONN_MAX_AGE": 0,
            # With the pool this makes psycopg check a connection before handing it out: after a
            # PostgreSQL restart the dead ones are replaced instead of failing a request each.
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                **options,
                "pool": {"min_size": 1, "max_size": pool_max, "timeout": 10},
            },
        }
    if scheme == "sqlite":
        path = unquote(parts.path) or ":memory:"
        if parts.netloc and not path.startswith("/"):
            path = parts.netloc + path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    raise ConfigError("DATABASE_URL", f"unsupported scheme {scheme or '(none)'!r}; use postgres:// or sqlite://")


def _redis_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"} or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError("REDIS_URL", "expected redis://HOST[:PORT]/DB")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError("REDIS_URL", "the port is not a number") from None
    return url


# --------------------------------------------------------------------------- environment
SENTINEL_ENV = _choice("SENTINEL_ENV", "development", {"development", "production", "test"})
PRODUCTION = SENTINEL_ENV == "production"

SECRET_KEY = _str("DJANGO_SECRET_KEY", required=PRODUCTION) or "dev-insecure-3b1f0c6e8d9a4e2f-not-for-production"
if PRODUCTION and len(SECRET_KEY) < 50:
    raise ConfigError("DJANGO_SECRET_KEY", "must be at least 50 characters in production")
DEBUG = _bool("DJANGO_DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ConfigError("DJANGO_DEBUG", "must be false in production")
ALLOWED_HOSTS = _list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS", "is required when SENTINEL_ENV=production")
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = _str("DATABASE_URL", required=PRODUCTION)
REDIS_URL = _redis_url(_str("REDIS_URL", required=PRODUCTION))
LOG_LEVEL = _choice("DJANGO_LOG_LEVEL", "INFO", {"debug", "info", "warning", "error", "critical"}).upper()
LOG_FORMAT = _choice("SENTINEL_LOG_FORMAT", "json" if PRODUCTION else "text", {"json", "text"})

# Secrets hashing/encryption. The pepper keys the API-key hash (HMAC-SHA256); rotating it invalidates
# every key, so it is separate from SECRET_KEY.
SENTINEL_KEY_PEPPER = _str("SENTINEL_KEY_PEPPER", required=False) or SECRET_KEY
SENTINEL_CREDENTIALS_KEY = _str("SENTINEL_CREDENTIALS_KEY")  # Fernet key for provider credentials

SENTINEL_CATALOG = _str("SENTINEL_CATALOG") or str(BASE_DIR / "gateway" / "catalog" / "default.yaml")
SENTINEL_MOCK_BASE_URL = _str("SENTINEL_MOCK_BASE_URL")
SENTINEL_METRICS_TOKEN = _str("SENTINEL_METRICS_TOKEN")
SENTINEL_METRICS_TENANT_LABEL = _bool("SENTINEL_METRICS_TENANT_LABEL", True)
# Client networks (CIDRs) allowed to read /metrics; when set, every other address gets 403.
SENTINEL_METRICS_ALLOW = _list("SENTINEL_METRICS_ALLOW", [])
for _network in SENTINEL_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ConfigError("SENTINEL_METRICS_ALLOW", f"expected CIDRs like 10.0.0.0/8, got {_network!r}") from None
SENTINEL_REDIS_PREFIX = _str("SENTINEL_REDIS_PREFIX", "") or ""

# Gateway limits and timeouts.
SENTINEL_MAX_BODY_BYTES = _int("SENTINEL_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
SENTINEL_MAX_MESSAGES = _int("SENTINEL_MAX_MESSAGES", 1000, minimum=1)
SENTINEL_MAX_CONTENT_CHARS = _int("SENTINEL_MAX_CONTENT_CHARS", 1_000_000, minimum=1)
SENTINEL_UPSTREAM_CONNECT_TIMEOUT = _float("SENTINEL_UPSTREAM_CONNECT_TIMEOUT", 5.0)
SENTINEL_UPSTREAM_READ_TIMEOUT = _float("SENTINEL_UPSTREAM_READ_TIMEOUT", 60.0)
SENTINEL_UPSTREAM_TOTAL_TIMEOUT = _float("SENTINEL_UPSTREAM_TOTAL_TIMEOUT", 600.0)
SENTINEL_UPSTREAM_TRANSPORT = _choice("SENTINEL_UPSTREAM_TRANSPORT", "aiohttp", {"aiohttp", "httpx"})
SENTINEL_UPSTREAM_MAX_CONNECTIONS = _int("SENTINEL_UPSTREAM_MAX_CONNECTIONS", 200, minimum=1)
SENTINEL_RETRIES = _int("SENTINEL_RETRIES", 2)
SENTINEL_RETRY_BACKOFF = _float("SENTINEL_RETRY_BACKOFF", 0.1)
SENTINEL_BREAKER_FAILURES = _int("SENTINEL_BREAKER_FAILURES", 5, minimum=1)
SENTINEL_BREAKER_COOLDOWN = _float("SENTINEL_BREAKER_COOLDOWN", 30.0)
SENTINEL_STREAM_HEARTBEAT = _float("SENTINEL_STREAM_HEARTBEAT", 15.0)
SENTINEL_KEY_CACHE_SECONDS = _float("SENTINEL_KEY_CACHE_SECONDS", 5.0)
SENTINEL_CORS_ORIGINS = _list("SENTINEL_CORS_ORIGINS", [])
if "*" in SENTINEL_CORS_ORIGINS:
    raise ConfigError("SENTINEL_CORS_ORIGINS", "a wildcard is not allowed; list the origins")
SENTINEL_RATE_LIMIT_FAIL_OPEN = _bool("SENTINEL_RATE_LIMIT_FAIL_OPEN", True)
# Limits/cache Redis calls: per-connect and per-reply timeout; how long Redis is then skipped;
# how long a budget reservation lives before reconciliation releases it (0 = upstream total + 60 s).
SENTINEL_LIMITS_REDIS_TIMEOUT = _float("SENTINEL_LIMITS_REDIS_TIMEOUT", 0.25)
SENTINEL_REDIS_DOWN_BACKOFF = _float("SENTINEL_REDIS_DOWN_BACKOFF", 1.0)
SENTINEL_RESERVATION_TTL = _float("SENTINEL_RESERVATION_TTL", 0.0)
SENTINEL_SHUTDOWN_GRACE = _float("SENTINEL_SHUTDOWN_GRACE", 25.0)
# Audit retention of the platform chain (logins, catalog price changes); tenants set their own.
# Budget-alert webhooks to private/loopback addresses (SSRF guard): allowed outside production only.
SENTINEL_WEBHOOK_ALLOW_PRIVATE = _bool("SENTINEL_WEBHOOK_ALLOW_PRIVATE", not PRODUCTION)
# Without Redis (the embedded default) the web process runs the beat schedule on a thread.
SENTINEL_EMBEDDED_BEAT = _bool("SENTINEL_EMBEDDED_BEAT", True)
SENTINEL_PLATFORM_AUDIT_RETENTION_DAYS = _int("SENTINEL_PLATFORM_AUDIT_RETENTION_DAYS", 365, minimum=1)

DATA_UPLOAD_MAX_MEMORY_SIZE = SENTINEL_MAX_BODY_BYTES

EMAIL_URL = _str("EMAIL_URL")
DEFAULT_FROM_EMAIL = _str("DEFAULT_FROM_EMAIL", "Sentinel <sentinel@localhost>")

# --------------------------------------------------------------------------- Django
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "django_prometheus",
    "tenants",
    "gateway",
    "billing",
    "audit",
]

MIDDLEWARE = [
    # django-prometheus' request metrics (django_http_*), for the console only: the /v1 API has its
    # own sentinel_* metrics and no sync middleware.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.ConsoleAccountMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# The /v1 API, /health and /metrics are served by a second handler with only these: under ASGI every
# sync middleware hops to a thread, and the full stack was measured to cut throughput 2-3x.
SENTINEL_API_MIDDLEWARE = [
    "sentinel_site.middleware.ApiRequestMiddleware",
]

ROOT_URLCONF = "sentinel_site.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "sentinel_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "sentinel_site.context_processors.console",
            ],
        },
    },
]

if DATABASE_URL:
    DATABASES = {"default": _database(DATABASE_URL)}
else:
    (BASE_DIR / ".data").mkdir(exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / ".data" / "sentinel.sqlite3",
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 60}], "prefix": "sentinel:ch"},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "drain-usage-spool": {"task": "billing.tasks.drain_usage_spool", "schedule": 2.0},
    "rollup-recent-usage": {"task": "billing.tasks.rollup_recent_usage", "schedule": 300.0},
    "close-monthly-statements": {"task": "billing.tasks.close_monthly_statements", "schedule": 3600.0},
    "check-budget-alerts": {"task": "billing.tasks.check_budget_alerts", "schedule": 60.0},
    "reconcile-reservations": {"task": "gateway.tasks.reconcile_reservations", "schedule": 30.0},
    "apply-audit-retention": {"task": "audit.tasks.apply_audit_retention", "schedule": 86400.0},
    "purge-request-log": {"task": "audit.tasks.purge_request_log", "schedule": 3600.0},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = _int("DJANGO_SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = False
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # Celery inherits it; tenants carry their own calendar timezone
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Outside production, static files come straight from the app and `static/` folders (no
# collectstatic step for `make run` and the tests); production serves the hashed STATIC_ROOT.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION

if EMAIL_URL:
    vars().update(env.email_url_config(EMAIL_URL))
elif not PRODUCTION:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --------------------------------------------------------------------------- security
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
    SECURE_HSTS_SECONDS = _int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --------------------------------------------------------------------------- logging
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "sentinel_site.logging.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "sentinel_site.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "formatter": LOG_FORMAT,
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default config gives "django" a second, plain-text console handler when DEBUG is
        # on; without it every line goes through the root handler (one JSON object a line).
        "django": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# Built-in mock provider (kind "mock"): deterministic answers, tunable for demos and benchmarks.
SENTINEL_MOCK_LATENCY_MS = _int("SENTINEL_MOCK_LATENCY_MS", 0)
SENTINEL_MOCK_CHUNKS = _int("SENTINEL_MOCK_CHUNKS", 20, minimum=1)
SENTINEL_MOCK_CHUNK_DELAY_MS = _int("SENTINEL_MOCK_CHUNK_DELAY_MS", 0)
