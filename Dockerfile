# syntax=docker/dockerfile:1
#
# Sentinel image: one image for the web (granian, uvicorn or daphne), the Celery worker and beat, and the mock provider.
#
#   docker build -t sentinel:local .
#   docker run -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... sentinel:local
#
# The runtime runs the application from its source tree in /app (PYTHONPATH=/app), so templates,
# static files and the model catalog YAML are used in place; the venv holds the dependencies
# declared in pyproject.toml.

ARG PYTHON_IMAGE=python:3.12-slim

# ------------------------------------------------------------------ builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# Only pyproject.toml: `pip install .` then installs every dependency the project declares (the
# package directories are not here yet, so the project itself contributes only its metadata), and
# this layer is rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN pip install --upgrade pip setuptools wheel \
    && pip install . \
    && pip check

# ------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=sentinel_site.settings

RUN groupadd --system --gid 10001 sentinel \
    && useradd --system --uid 10001 --gid sentinel --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin sentinel

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY . /app

# Static files are collected at build time with the production storage (hashed names + manifest).
# The values below exist only for this command: settings demand them when SENTINEL_ENV=production.
# Nothing connects to the database or Redis during collectstatic. /app/.data is where settings put
# the SQLite database when DATABASE_URL is unset, so it is the one directory the app user may write.
RUN SENTINEL_ENV=production \
    DJANGO_SECRET_KEY=build-only-collectstatic-dummy-secret-key-not-used-at-runtime-0000000000 \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput \
    && rm -f /tmp/collectstatic.sqlite3 \
    && mkdir -p /app/.data \
    && chown sentinel:sentinel /app/.data

USER sentinel

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://localhost:8000/health/live', timeout=4).status == 200 else 1)"]

# `make serve` with HOST=0.0.0.0 PORT=8000: granian (chosen by measurement: README, "Performance") with a
# graceful SIGTERM (sentinel_site/serve.py); SENTINEL_SERVER=uvicorn or daphne serve the same application.
# Worker processes: WEB_CONCURRENCY.
ENV SENTINEL_SERVER=granian
CMD ["python", "-m", "sentinel_site.serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
