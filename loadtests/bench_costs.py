"""Cost pages benchmark: a tenant with a year of usage on 100 API keys (plus a noisy neighbour) in a
scratch PostgreSQL database; rollups computed by the real service; every cost page, export and
/v1/usage timed in-process with Django's test client (server time: URL resolution, middleware,
view, queries, template), printed as a table. No pass/fail.

    DATABASE_URL=postgres://root@127.0.0.1:5432/sentinel .venv/bin/python -m loadtests.bench_costs
    ... --events 1000000 --other-events 200000 --runs 10 --keep

The scratch database is ``<name of DATABASE_URL>_bench_costs`` (dropped and re-created, dropped at
the end unless ``--keep``; ``--reuse`` skips loading when it already holds the data). Ledger rows are
generated in SQL (``generate_series``): loading is bounded by PostgreSQL, not Python. Rollups are
computed by ``billing.services.usage_rollup_days`` (timed: it is the nightly-recompute worst case).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import timedelta

from loadtests.scratchdb import drop_database, use_scratch_database

KEYS = 100
MODELS = [
    # name, USD per 1M input, cached input, output
    ("gpt-test", 1.0, 0.5, 2.0),
    ("claude-test", 3.0, 0.3, 15.0),
    ("mini-test", 0.15, 0.075, 0.6),
    ("embed-test", 0.02, 0.02, 0.0),
]
TAGS = [
    "{}",
    '{"project": "alpha"}',
    '{"project": "beta", "agent": "triage"}',
    '{"app": "web"}',
    '{"project": "alpha", "app": "cli"}',
]


LEDGER_SQL = """
INSERT INTO billing_usageevent (
    tenant_id, api_key_id, request_id, created_at, endpoint, model, provider, route, attempts,
    prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_micros, price_id,
    adjustment_percent, status, http_status, latency_ms, ttft_ms, estimated, cache_hit, stream, tags)
SELECT %(tenant)s, keys[k], %(prefix)s || g, ts, 'chat.completions', m.name, 'mock', 'mock/' || m.name,
       1, p, 0, c, 0, round(p * m.input + c * m.output)::bigint, m.price_id, 0,
       CASE WHEN r < 0.03 THEN 'error' WHEN r < 0.05 THEN 'client_closed' ELSE 'ok' END,
       CASE WHEN r < 0.03 THEN 502 WHEN r < 0.05 THEN 499 ELSE 200 END,
       (200 + random() * 3000)::int, (50 + random() * 500)::int, r >= 0.03 AND r < 0.05, false, r < 0.5,
       (%(tags)s::jsonb[])[1 + (g %% %(ntags)s)]
FROM (
    SELECT g, random() AS r,
           -- a year, busier on weekdays; keys follow a power law (a few spend most)
           now() - (random() * interval '365 days') AS ts,
           1 + floor(%(nkeys)s * power(random(), 2))::int AS k,
           1 + (g %% %(nmodels)s) AS mi,
           (100 + random() * 4000)::int AS p,
           (20 + random() * 900)::int AS c
    FROM generate_series(1, %(events)s) AS g
) AS x
JOIN (SELECT * FROM unnest(%(names)s::text[], %(inputs)s::numeric[], %(outputs)s::numeric[], %(prices)s::bigint[])
      WITH ORDINALITY AS t(name, input, output, price_id, i)) AS m ON m.i = x.mi
CROSS JOIN (SELECT %(keys)s::bigint[] AS keys) AS ks
WHERE extract(isodow FROM ts) < 6 OR random() < 0.4
"""


def load(tenant, keys, events: int, prefix: str) -> int:
    from django.db import connection

    from billing.models import Price

    prices = {p.model.name: p for p in Price.objects.select_related("model")}
    with connection.cursor() as cursor:
        cursor.execute(
            LEDGER_SQL,
            {
                "tenant": tenant.pk,
                "prefix": prefix,
                "tags": TAGS,
                "ntags": len(TAGS),
                "nkeys": len(keys),
                "nmodels": len(MODELS),
                "events": events,
                "names": [m[0] for m in MODELS],
                "inputs": [m[1] for m in MODELS],
                "outputs": [m[3] for m in MODELS],
                "prices": [prices[m[0]].pk for m in MODELS],
                "keys": [k.pk for k in keys],
            },
        )
        return cursor.rowcount


def setup_world(args) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from billing.calendar import local_today
    from billing.services import statements_close_due, usage_rollup_days
    from gateway.catalog_sync import catalog_sync
    from tenants.models import Role
    from tenants.services import api_key_create, membership_add, tenant_create

    catalog_sync(
        now=timezone.now() - timedelta(days=400),
        data={
            "providers": [{"name": "mock", "kind": "mock"}],
            "models": [
                {"name": n, "routes": [{"provider": "mock"}], "price": {"input": i, "cached_input": ci, "output": o}}
                for n, i, ci, o in MODELS
            ],
        },
    )
    owner = get_user_model().objects.create_user("owner@bench.test", "owner@bench.test", "bench-password-1")
    tenant, _, _ = tenant_create(slug="bench", name="Bench Corp", timezone_name="Europe/Paris")
    tenant.budget_usd = 250_000
    tenant.save(update_fields=["budget_usd"])
    membership_add(tenant=tenant, user=owner, role=Role.OWNER)
    keys = [
        api_key_create(tenant=tenant, actor=owner, name=f"service-{i:03d}", budget_usd=5_000 if i % 10 == 0 else None)[
            0
        ]
        for i in range(KEYS)
    ]
    neighbour, _, _ = tenant_create(slug="neighbour", name="Neighbour", timezone_name="America/New_York")
    their_keys = [api_key_create(tenant=neighbour, actor=owner, name=f"n-{i}")[0] for i in range(10)]

    started = time.perf_counter()
    n = load(tenant, keys, args.events, "bench-a-") + load(neighbour, their_keys, args.other_events, "bench-b-")
    print(f"ledger: {n:,} rows in {time.perf_counter() - started:.1f}s")
    for t in (tenant, neighbour):
        started = time.perf_counter()
        today = local_today(t)
        result = usage_rollup_days(tenant=t, first=today - timedelta(days=366), last=today)
        print(f"rollup {t.slug}: {result.summary()} in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    closed = statements_close_due()
    print(f"statements: {len(closed)} closed in {time.perf_counter() - started:.1f}s")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def targets(tenant, key, day, month) -> list[tuple[str, str, dict, bool]]:
    from django.urls import reverse

    from billing.calendar import local_today

    t = {"tenant_slug": tenant.slug}
    costs = reverse("billing:costs", kwargs=t)
    today = local_today(tenant)
    year = {"start": (today - timedelta(days=364)).isoformat(), "end": today.isoformat()}
    return [
        ("costs (30 days, compare)", costs, {}, False),
        ("costs (365 days, compare)", costs, year, False),
        ("  table by key (htmx)", costs, {**year, "group": "key"}, True),
        ("  table by key, page 2 (htmx)", costs, {**year, "group": "key", "cursor": "<next>"}, True),
        ("  table by tag (htmx)", costs, {**year, "group": "tag", "tag": "project"}, True),
        ("  table by day (htmx)", costs, {**year, "group": "day"}, True),
        ("day drill-down", reverse("billing:costs_day", kwargs={**t, "day": day}), {}, False),
        ("day drill-down, one key", reverse("billing:costs_day", kwargs={**t, "day": day}), {"key": key.pk}, False),
        ("key page (365 days)", reverse("billing:costs_key", kwargs={**t, "key_id": key.pk}), year, False),
        ("statements", reverse("billing:statements", kwargs=t), {}, False),
        (
            "statement (closed month)",
            reverse("billing:statement", kwargs={**t, "year": month.year, "month": month.month}),
            {},
            False,
        ),
        (
            "statement (open month)",
            reverse("billing:statement", kwargs={**t, "year": today.year, "month": today.month}),
            {},
            False,
        ),
        ("budget alerts", reverse("billing:alerts", kwargs=t), {}, False),
        ("CSV daily rollup (365 days)", reverse("billing:export_rollup_csv", kwargs=t), year, False),
        (
            "CSV requests (1 day)",
            reverse("billing:export_usage_csv", kwargs=t),
            {"start": day.isoformat(), "end": day.isoformat()},
            False,
        ),
        ("/v1/usage by day (365 days)", "/v1/usage", {**year, "group_by": "day"}, False),
        ("/v1/usage by key (365 days)", "/v1/usage", {**year, "group_by": "key"}, False),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="ledger rows of the benchmarked tenant")
    parser.add_argument("--other-events", type=int, default=200_000, help="ledger rows of a noisy neighbour")
    parser.add_argument("--runs", type=int, default=10, help="timed requests per page (after 2 warm-ups)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse an already loaded scratch database")
    args = parser.parse_args()

    scratch = use_scratch_database("bench_costs", "_bench_costs", reuse=args.reuse)
    if scratch is None:
        return 2
    admin, name, fresh = scratch
    os.environ.pop("REDIS_URL", None)  # no spool, no live counters: pages and API read PostgreSQL only

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from billing.models import DailyUsage, MonthlyStatement, UsageEvent
    from tenants.models import ApiKey, Tenant

    # no setup_test_environment(): its template-render instrumentation would inflate the timings
    try:
        if fresh or not Tenant.objects.filter(slug="bench").exists():
            call_command("migrate", verbosity=0, skip_checks=True)
            setup_world(args)
        tenant = Tenant.objects.get(slug="bench")
        print(
            f"bench: {ApiKey.objects.filter(tenant=tenant).count()} keys, "
            f"{UsageEvent.objects.filter(tenant=tenant).count():,} ledger rows, "
            f"{DailyUsage.objects.filter(tenant=tenant).count():,} daily rollup rows "
            f"({UsageEvent.objects.count():,} ledger rows in all)"
        )
        from django.contrib.auth import get_user_model

        owner = Client()
        owner.force_login(get_user_model().objects.get(username="owner@bench.test"))
        busiest_key = (
            DailyUsage.objects.filter(tenant=tenant, api_key__isnull=False)
            .values("api_key_id")
            .annotate(c=django.db.models.Sum("cost_micros"))
            .order_by("-c")
            .first()["api_key_id"]
        )
        key = ApiKey.objects.get(pk=busiest_key)
        from tenants.services import api_key_create

        _, token = api_key_create(tenant=tenant, actor=None, name="bench-reader", scopes=["usage:read"])
        day = (
            DailyUsage.objects.filter(tenant=tenant)
            .values("day")
            .annotate(n=django.db.models.Sum("requests"))
            .order_by("-n")
            .first()["day"]
        )
        month = MonthlyStatement.objects.filter(tenant=tenant).order_by("-month").first().month

        rows = []
        next_cursor = None
        for label, path, params, htmx in targets(tenant, key, day, month):
            headers = {"HX-Request": "true"} if htmx else {}
            if path.startswith("/v1/"):
                headers = {"Authorization": f"Bearer {token}"}
            if params.get("cursor") == "<next>":
                params = {**params, "cursor": next_cursor}
            timings, size = [], 0
            for run in range(args.runs + 2):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = owner.get(path, params, headers=headers)
                    body = b"".join(response.streaming_content) if response.streaming else response.content
                    elapsed = (time.perf_counter() - started) * 1000
                if run >= 2:
                    timings.append(elapsed)
                size = len(body)
            if label.strip() == "table by key (htmx)":
                found = re.search(rb'cursor=([A-Za-z0-9_-]+)[^>]*rel="next"', body)
                next_cursor = found.group(1).decode() if found else None
            timings.sort()
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            rows.append((label, response.status_code, len(queries), statistics.median(timings), p95, size))

        width = max(len(r[0]) for r in rows)
        print(f"\n{'page':<{width}}  status  queries  median ms   p95 ms    bytes")
        for label, status, nq, median, p95, size in rows:
            print(f"{label:<{width}}  {status:>6}  {nq:>7}  {median:>9.1f}  {p95:>7.1f}  {size:>7,}")
        print(f"\n{args.runs} timed runs per page after 2 warm-ups, in-process (Django test client), database {name}")
        return 0 if all(r[1] == 200 for r in rows) else 1
    finally:
        connection.close()
        if not args.keep:
            drop_database(admin, name)


if __name__ == "__main__":
    sys.exit(main())
