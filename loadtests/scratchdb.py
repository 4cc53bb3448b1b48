"""Scratch PostgreSQL databases for the page benchmarks: ``<name of DATABASE_URL><suffix>``."""

from __future__ import annotations

import os
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


def use_scratch_database(prog: str, suffix: str, *, reuse: bool) -> tuple[str, str, bool] | None:
    """Point ``DATABASE_URL`` (and Django's settings module) at the scratch database next to it.
    Returns (admin URL, name, whether it was created fresh), or None after explaining why not."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        print(f"{prog}: set DATABASE_URL=postgres://… (a scratch database is created next to it)")
        return None
    url, admin, name = scratch_url(base, suffix)
    fresh = create_database(admin, name, drop=not reuse)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sentinel_site.settings")
    return admin, name, fresh
