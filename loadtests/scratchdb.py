"""Scratch PostgreSQL databases for the page benchmarks: ``<name of DATABASE_URL><suffix>``."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg


def scratch_url(base: str, suffix: str) -> tuple[str, str, str]:
    """(URL of the scratch database, URL of the maintenance database, scratch database name)."""
    parts = urlsplit(base)
    name = parts.path.lstrip("/") + suffix
    admin = urlunsplit(parts._replace(path="/postgres"))
    return urlunsplit(parts._replace(path="/" + name)), admin, name


def create_database(admin_url: str, name: str, *, drop: bool) -> bool:
    """Create ``name`` (re-created when ``drop``); False when it existed and was kept."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and not drop:
            return False
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
