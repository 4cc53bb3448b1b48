# Sentinel — the two commands: `make run` (embedded default) and `make test` (real PostgreSQL + Redis).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
HOST      ?= 127.0.0.1
PORT      ?= 8000
# The suite always runs on the real services; override to point elsewhere.
TEST_DATABASE_URL ?= postgres://root@127.0.0.1:5432/sentinel
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/15
BENCH_DATABASE_URL ?= postgres://root@127.0.0.1:5432/sentinel_bench
BENCH_REDIS_URL    ?= redis://127.0.0.1:6379/13

.PHONY: help install run serve worker test test-deps lint format lock bench migrate clean

help:
	@echo "make run      - install, migrate, seed the demo tenant, serve on http://$(HOST):$(PORT) (embedded default)"
	@echo "make test     - install, lint, run the whole suite on real PostgreSQL and Redis"
	@echo "make serve    - production server (granian + graceful shutdown) honouring HOST, PORT, WEB_CONCURRENCY, SERVER"
	@echo "make worker   - Celery worker with beat"
	@echo "make lint     - ruff check + ruff format --check"
	@echo "make bench    - gateway benchmark (see README, Performance)"

$(VENV)/.installed: pyproject.toml requirements.lock
	@PYBIN=$$(scripts/find_python.sh) || exit 1; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PYBIN"; "$$PYBIN" -m venv $(VENV); fi
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c requirements.lock -e '.[dev,bench]'
	@touch $@

install: $(VENV)/.installed

lock: install
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > requirements.lock
	@echo "requirements.lock written"

migrate: install
	$(PY) manage.py migrate --noinput

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo ""
	@echo "Sentinel is starting on http://$(HOST):$(PORT)  (console login: owner@acme.test / sentinel-demo)"
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) sentinel_site.asgi:application

# sentinel_site/serve.py: graceful SIGTERM (drains streams, flushes the usage spool). granian by
# measurement (README, Performance); SERVER=uvicorn or SERVER=daphne serve the same application.
SERVER    ?= granian
serve: install
	$(PY) -m sentinel_site.serve --host $(HOST) --port $(PORT) --proxy-headers --server $(SERVER)

worker: install
	$(VENV)/bin/celery -A sentinel_site worker --beat --loglevel=INFO --concurrency=2

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# System packages the suite drives: Chromium (console tests), promtool/prometheus (metrics test),
# docker-compose (config validation), wrk (benchmark). Installed only when missing, as root.
test-deps:
	@scripts/ensure_system_deps.sh

test: install test-deps lint
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) SENTINEL_ENV=test \
	  $(PY) -m pytest $(PYTEST_ARGS)

# Its own database and Redis db (it empties the Redis db): never the suite's.
bench: install test-deps
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) \
	  $(PY) -m loadtests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data staticfiles .pytest_cache .ruff_cache
