"""Console page benchmark: seed the demo world (``seed_demo``) into a scratch PostgreSQL database and
time every console page in-process with Django's test client (server time: URL resolution,
middleware, view, queries, template), printing a table. No pass/fail: the target is < 300 ms.

    DATABASE_URL=postgres://root@127.0.0.1:5432/sentinel .venv/bin/python -m loadtests.bench_console
    ... --runs 20 --days 31 --keep

The scratch database is ``<name of DATABASE_URL>_bench_console`` (dropped and re-created, dropped at
the end unless ``--keep``; ``--reuse`` skips seeding when it already holds the demo tenants).
Redis is not used unless ``--redis`` is given (the live-metrics fragment then reads real counters).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from loadtests.scratchdb import drop_database, use_scratch_database


def pages(tenant_slug: str, key_id: int, membership_id: int) -> list[tuple[str, str, bool]]:
    """(label, path, htmx) for every console page; pages of apps whose URLs are missing are skipped."""
    from django.urls import NoReverseMatch, reverse

    t = {"tenant_slug": tenant_slug}
    wanted = [
        ("home (tenant picker)", "home", {}, False),
        ("overview", "tenants:overview", t, False),
        ("live metrics", "tenants:live", t, False),
        ("live fragment (poll)", "tenants:live_fragment", t, True),
        ("keys", "tenants:keys", t, False),
        ("keys: search (htmx)", "tenants:keys", t, True),
        ("key: new form (htmx)", "tenants:api_key_create", t, True),
        ("key: edit form (htmx)", "tenants:api_key_edit", {**t, "key_id": key_id}, True),
        ("key: rotate form (htmx)", "tenants:api_key_rotate", {**t, "key_id": key_id}, True),
        ("members", "tenants:members", t, False),
        ("settings", "tenants:settings", t, False),
        ("password change", "password_change", {}, False),
        ("platform: tenants", "tenants:platform_tenants", {}, False),
        ("costs", "billing:costs", t, False),
        ("budget alerts", "billing:alerts", t, False),
        ("audit log", "audit:events", t, False),
        ("request log", "audit:requests", t, False),
    ]
    found = []
    for label, name, kwargs, htmx in wanted:
        try:
            path = reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            continue
        if label == "keys: search (htmx)":
            path += "?q=prod&status=active"
        found.append((label, path, htmx))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page (after 2 warm-ups)")
    parser.add_argument("--days", type=int, default=31, help="days of demo usage to seed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse an already seeded scratch database")
    parser.add_argument("--redis", action="store_true", help="keep REDIS_URL (live counters from Redis)")
    args = parser.parse_args()

    scratch = use_scratch_database("bench_console", "_bench_console", reuse=args.reuse)
    if scratch is None:
        return 2
    admin, name, fresh = scratch
    if not args.redis:
        os.environ.pop("REDIS_URL", None)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tenants.models import ApiKey, Membership, Tenant

    # no setup_test_environment(): its template-render instrumentation would inflate the timings
    try:
        if fresh or not Tenant.objects.filter(slug="acme").exists():
            started = time.perf_counter()
            call_command("migrate", verbosity=0, skip_checks=True)
            call_command("seed_demo", days=args.days, verbosity=0, stdout=open(os.devnull, "w"))
            print(f"seeded {name} in {time.perf_counter() - started:.1f}s")
        from billing.models import UsageEvent

        tenant = Tenant.objects.get(slug="acme")
        print(
            f"acme: {ApiKey.objects.filter(tenant=tenant).count()} keys, "
            f"{Membership.objects.filter(tenant=tenant).count()} members, "
            f"{UsageEvent.objects.filter(tenant=tenant).count()} usage events "
            f"({UsageEvent.objects.count()} in all)"
        )
        owner = Client()
        owner.force_login(Membership.objects.get(tenant=tenant, role="owner").user)
        from django.contrib.auth import get_user_model

        operator = Client()
        operator.force_login(get_user_model().objects.filter(is_superuser=True).first())
        key = ApiKey.objects.filter(tenant=tenant).order_by("pk").first()
        membership = Membership.objects.filter(tenant=tenant).order_by("pk").first()

        rows = []
        for label, path, htmx in pages(tenant.slug, key.pk, membership.pk):
            client = operator if label.startswith(("platform", "home")) else owner
            headers = {"HX-Request": "true"} if htmx else {}
            for _ in range(2):
                client.get(path, headers=headers)
            timings = []
            for _ in range(args.runs):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(path, headers=headers)
                    timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            rows.append((label, path, response.status_code, len(queries), statistics.median(timings), p95, timings[-1]))

        width = max(len(r[0]) for r in rows)
        print(f"\n{'page':<{width}}  status  queries  median ms   p95 ms   max ms  path")
        for label, path, status, nq, median, p95, worst in rows:
            flag = "  <-- over 300 ms" if p95 >= 300 else ""
            print(f"{label:<{width}}  {status:>6}  {nq:>7}  {median:>9.1f}  {p95:>7.1f}  {worst:>7.1f}  {path}{flag}")
        print(f"\n{args.runs} timed runs per page, in-process (Django test client), database {name}")
        return 0 if all(r[2] == 200 for r in rows) else 1
    finally:
        connection.close()
        if not args.keep:
            drop_database(admin, name)


if __name__ == "__main__":
    sys.exit(main())
