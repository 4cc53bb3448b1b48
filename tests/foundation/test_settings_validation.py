import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "SENTINEL_ENV",
            "DJANGO_SECRET_KEY",
            "ALLOWED_HOSTS",
            "DJANGO_SETTINGS_MODULE",
            "SENTINEL_REDIS_PREFIX",
        }
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://h:notaport/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"SENTINEL_MAX_BODY_BYTES": "lots"}, "SENTINEL_MAX_BODY_BYTES"),
        ({"SENTINEL_ENV": "staging"}, "SENTINEL_ENV"),
        ({"SENTINEL_CORS_ORIGINS": "*"}, "SENTINEL_CORS_ORIGINS"),
        ({"SENTINEL_ENV": "production"}, "DJANGO_SECRET_KEY"),
        (
            {"SENTINEL_ENV": "production", "DJANGO_SECRET_KEY": "x" * 60, "ALLOWED_HOSTS": "a.example"},
            "DATABASE_URL",
        ),
        ({"SENTINEL_ENV": "production", "DJANGO_SECRET_KEY": "x" * 60}, "ALLOWED_HOSTS"),
    ],
)
def test_bad_environment_stops_boot_with_one_line_naming_the_variable(env, variable):
    result = run_check(**env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "Traceback" not in result.stderr


def test_embedded_default_boots_with_nothing_set():
    result = run_check()
    assert result.returncode == 0, result.stderr


def test_production_deploy_check_passes_without_warnings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **os.environ,
            "SENTINEL_ENV": "production",
            "DJANGO_SECRET_KEY": "k" * 20 + "Zq9!x" * 10,
            "ALLOWED_HOSTS": "sentinel.example.com",
            "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/sentinel"),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
