"""Test settings: the real settings, on real PostgreSQL and Redis, with speed knobs turned."""

import os

from sentinel_site.settings import *  # noqa: F403
from sentinel_site.settings import DATABASES, REDIS_URL

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or not REDIS_URL:
    raise SystemExit("sentinel: the test-suite runs on real services: set DATABASE_URL=postgres://… and REDIS_URL")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# One Redis namespace per test run (and its live servers), so runs never see each other's counters.
SENTINEL_REDIS_PREFIX = os.environ.get("SENTINEL_REDIS_PREFIX") or f"test{os.getpid()}:"
CELERY_TASK_ALWAYS_EAGER = True
DATABASES["default"]["OPTIONS"]["pool"]["min_size"] = 0
# Many live servers come and go during a run: each keeps few connections, and not for long, so the
# suite stays far below PostgreSQL's max_connections even beside other users of the server.
DATABASES["default"]["OPTIONS"]["pool"]["max_size"] = min(DATABASES["default"]["OPTIONS"]["pool"]["max_size"], 8)
DATABASES["default"]["OPTIONS"]["pool"]["max_idle"] = 30
