"""Audit search benchmark: bulk-load 1,000,000 audit events for one tenant (plus a noisy neighbour
and a request log) into a scratch PostgreSQL database, then time the search selectors and the
console pages, server side.

    DATABASE_URL=postgres://root@127.0.0.1:5432/sentinel .venv/bin/python -m loadtests.bench_audit
    ... --events 1000000 --other-events 200000 --request-log 1000000 --runs 15 --keep

The scratch database is ``<name of DATABASE_URL>_bench_audit`` (dropped and re-created, dropped at
the end unless ``--keep``; ``--reuse`` skips loading when it already holds the data). Rows are
generated in SQL (``generate_series``), so loading is bounded by PostgreSQL, not Python: about a
minute for the defaults. The generated hashes are not a valid chain; this measures search only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta

from loadtests.scratchdb import drop_database, use_scratch_database

ACTIONS = [
    # (action, weight out of 1000)
    ("api_key.created", 120),
    ("api_key.updated", 120),
    ("api_key.rotated", 60),
    ("api_key.revoked", 40),
    ("budget.changed", 60),
    ("member.added", 30),
    ("member.role_changed", 20),
    ("member.removed", 10),
    ("tenant.settings_changed", 40),
    ("guardrail.blocked", 150),
    ("guardrail.flagged", 150),
    ("auth.failed", 190),
    ("export.downloaded", 10),
]


def action_case() -> str:
    """A SQL CASE picking an action from the weighted list by ``g %% 1000``."""
    lines, upto = [], 0
    for action, weight in ACTIONS:
        upto += weight
        lines.append(f"WHEN g %% 1000 < {upto} THEN '{action}'")
    return "CASE " + " ".join(lines) + " ELSE 'api_key.created' END"


def load_events(cursor, *, tenant_id: int, count: int, days: int, label: str) -> None:
    step = days * 86400.0 / max(count, 1)
    cursor.execute(
        f"""
        INSERT INTO audit_auditevent (tenant_id, seq, created_at, actor_type, actor_id, actor_label, action,
            target_type, target_id, target_label, before, after, metadata, ip, user_agent, request_id,
            prev_hash, hash)
        SELECT %(tenant)s, g,
            now() - make_interval(days => %(days)s) + make_interval(secs => g * %(step)s),
            CASE WHEN g %% 7 = 0 THEN 'api_key' ELSE 'user' END,
            CASE WHEN g %% 7 = 0 THEN 'k' || lpad((g %% 40)::text, 11, '0') ELSE (g %% 50)::text END,
            CASE WHEN g %% 7 = 0 THEN 'sk-sntl-k' || lpad((g %% 40)::text, 11, '0') || '-…abcd'
                 ELSE 'user' || (g %% 50) || '@{label}.test' END,
            {action_case()},
            CASE WHEN g %% 5 = 0 THEN 'tenants.membership' ELSE 'tenants.apikey' END,
            (g %% 5000)::text,
            CASE WHEN g %% 5 = 0 THEN 'member' || (g %% 5000) || '@{label}.test' ELSE 'key-' || (g %% 5000) END,
            CASE WHEN g %% 3 = 0 THEN jsonb_build_object('rpm', g %% 100, 'name', 'key-' || (g %% 5000)) END,
            CASE WHEN g %% 3 = 0 THEN jsonb_build_object('rpm', g %% 100 + 1, 'name', 'key-' || (g %% 5000)) END,
            jsonb_build_object(
                'reason', CASE WHEN g %% 2 = 0 THEN 'invalid_api_key' ELSE 'pii' END,
                'public_id', 'k' || lpad((g %% 40)::text, 11, '0'),
                'detector', CASE WHEN g %% 4 = 0 THEN 'email' ELSE 'injection' END,
                'ticket', CASE WHEN g %% 100000 = 0 THEN 'needle-' || g ELSE 'T-' || (g %% 20000) END
            ),
            ('10.' || (g %% 200) || '.' || (g %% 250) || '.' || (g %% 251))::inet,
            'bench-agent/1.0',
            'req_' || md5(g::text),
            md5((g - 1)::text) || md5((g - 1)::text),
            md5(g::text) || md5(g::text)
        FROM generate_series(1, %(count)s) AS g
        """,
        {"tenant": tenant_id, "days": days, "step": step, "count": count},
    )


def load_request_log(cursor, *, tenant_id: int, count: int, days: int, offset: int) -> None:
    step = days * 86400.0 / max(count, 1)
    cursor.execute(
        """
        INSERT INTO audit_requestlog (tenant_id, request_id, created_at, api_key_id, key_public_id, endpoint, model,
            provider, status, http_status, prompt_tokens, completion_tokens, cost_micros, latency_ms, ttft_ms,
            stream, cache_hit, guardrail_flags, error_type, prompt_text)
        SELECT %(tenant)s, 'req_' || (g + %(offset)s), now() - make_interval(days => %(days)s)
                + make_interval(secs => g * %(step)s), NULL, 'k' || lpad((g %% 40)::text, 11, '0'),
            'chat.completions', CASE WHEN g %% 3 = 0 THEN 'claude-test' ELSE 'gpt-test' END, 'mock',
            CASE WHEN g %% 50 = 0 THEN 'error' WHEN g %% 97 = 0 THEN 'rejected' ELSE 'ok' END,
            CASE WHEN g %% 50 = 0 THEN 502 WHEN g %% 97 = 0 THEN 429 ELSE 200 END,
            g %% 900, g %% 300, (g %% 900) * 3, 100 + g %% 900, 50 + g %% 200, g %% 2 = 0, false,
            CASE WHEN g %% 30 = 0 THEN '["pii"]'::jsonb ELSE '[]'::jsonb END, '', ''
        FROM generate_series(1, %(count)s) AS g
        """,
        {"tenant": tenant_id, "offset": offset, "days": days, "step": step, "count": count},
    )


def timed(func: Callable[[], object], runs: int) -> tuple[float, float, float, object]:
    func()  # warm the cache and the plan
    samples = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, samples[-1], result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--other-events", type=int, default=200_000)
    parser.add_argument("--request-log", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse an already loaded scratch database")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--only", default="", help="run only the cases whose title contains this")
    args = parser.parse_args()

    scratch = use_scratch_database("bench_audit", "_bench_audit", reuse=args.reuse)
    if scratch is None:
        return 2
    admin_url, name, fresh = scratch
    os.environ.pop("REDIS_URL", None)  # search needs PostgreSQL only; keep the bench self-contained

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from audit import selectors
    from audit.selectors import AuditFilters, RequestLogFilters
    from tenants.models import Membership, Role, Tenant

    try:
        if fresh:
            call_command("migrate", verbosity=0, skip_checks=True)
            t0 = time.perf_counter()
            tenant = Tenant.objects.create(slug="bench-a", name="Bench A")
            other = Tenant.objects.create(slug="bench-b", name="Bench B")
            with connection.cursor() as cursor:
                cursor.execute("SET maintenance_work_mem = '512MB'")
                load_events(cursor, tenant_id=tenant.pk, count=args.events, days=args.days, label="a")
                t_events = time.perf_counter()
                load_events(cursor, tenant_id=other.pk, count=args.other_events, days=args.days, label="b")
                load_request_log(cursor, tenant_id=tenant.pk, count=args.request_log, days=30, offset=0)
                load_request_log(
                    cursor, tenant_id=other.pk, count=args.request_log // 5, days=30, offset=args.request_log
                )
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE audit_auditevent")
                cursor.execute("VACUUM ANALYZE audit_requestlog")
            print(
                f"loaded {args.events:,} + {args.other_events:,} events in {t_events - t0:.1f} s "
                f"(+ request log, vacuum: {time.perf_counter() - t0:.1f} s total)"
            )
        tenant = Tenant.objects.get(slug="bench-a")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM audit_auditevent WHERE tenant_id = %s", [tenant.pk])
            print(f"tenant {tenant.slug}: {cursor.fetchone()[0]:,} audit events")
            cursor.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('audit_auditevent')), "
                "pg_size_pretty(pg_relation_size('audit_event_text_trgm'))"
            )
            total, trgm = cursor.fetchone()
            print(f"audit_auditevent with indexes: {total}; trigram index: {trgm}")

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT created_at, seq FROM audit_auditevent WHERE tenant_id = %s AND seq = %s",
                [tenant.pk, args.events // 2],
            )
            mid, mid_seq = cursor.fetchone()
            cursor.execute("SELECT max(created_at) FROM audit_auditevent WHERE tenant_id = %s", [tenant.pk])
            newest = cursor.fetchone()[0]

        audit_cases: list[tuple[str, AuditFilters, str | None]] = [
            ("newest page, no filter", AuditFilters(), None),
            ("deep page (cursor at the middle)", AuditFilters(), str(mid_seq)),
            ("action exact, 1% of rows", AuditFilters(action="export.downloaded"), None),
            ("action family api_key.*", AuditFilters(action="api_key"), None),
            ("actor id exact", AuditFilters(actor="17"), None),
            ("actor label contains", AuditFilters(actor="user17@"), None),
            ("target type:id", AuditFilters(target="tenants.apikey:1234"), None),
            ("target label contains", AuditFilters(target="member4995@"), None),
            ("date range: one week, middle", AuditFilters(since=mid, until=mid + timedelta(days=7)), None),
            ("date range: since a day ago", AuditFilters(since=newest - timedelta(days=1)), None),
            ("date range: until 300 days ago", AuditFilters(until=newest - timedelta(days=300)), None),
            ("free text, 10 matches", AuditFilters(q="needle-"), None),
            ("free text, 1 match", AuditFilters(q="needle-500000"), None),
            ("free text, ~50 matches", AuditFilters(q="T-12345"), None),
            ("free text, ~5,500 matches", AuditFilters(q="T-123"), None),
            ("free text, half the rows", AuditFilters(q="invalid_api"), None),
            ("free text, no match", AuditFilters(q="zzqqxx"), None),
            (
                "action + week + free text",
                AuditFilters(action="auth.failed", since=mid, until=mid + timedelta(days=7), q="invalid"),
                None,
            ),
            ("actor + action family", AuditFilters(actor="17", action="guardrail"), None),
        ]
        rl_cases: list[tuple[str, RequestLogFilters]] = [
            ("request log: newest page", RequestLogFilters()),
            ("request log: request id", RequestLogFilters(request_id="req_123456")),
            ("request log: key", RequestLogFilters(key="sk-sntl-k00000000017-…abcd")),
            ("request log: model + status error", RequestLogFilters(model="claude-test", status="error")),
            ("request log: status rejected", RequestLogFilters(status="rejected")),
        ]

        print()
        print(f"{'selector (server time, ms)':<44} {'median':>8} {'p95':>8} {'max':>8}  rows")
        worst = 0.0
        audit_cases = [c for c in audit_cases if args.only in c[0]]
        rl_cases = [c for c in rl_cases if args.only in c[0]]
        for title, filters, cursor in audit_cases:

            def run(filters=filters, cursor=cursor):
                return selectors.audit_event_search(tenant=tenant, filters=filters, cursor=cursor)

            med, p95, top, page = timed(run, args.runs)
            worst = max(worst, p95)
            print(f"{title:<44} {med:8.1f} {p95:8.1f} {top:8.1f}  {len(page.items)}")
            if args.explain:
                qs = selectors.audit_event_filter(tenant=tenant, filters=filters)
                if cursor:
                    qs = qs.filter(seq__lt=int(cursor))
                print(qs[:51].explain(analyze=True))
        for title, filters in rl_cases:

            def run(filters=filters):
                return selectors.request_log_search(tenant=tenant, filters=filters)

            med, p95, top, page = timed(run, args.runs)
            worst = max(worst, p95)
            print(f"{title:<44} {med:8.1f} {p95:8.1f} {top:8.1f}  {len(page.items)}")
            if args.explain:
                print(selectors.request_log_filter(tenant=tenant, filters=filters)[:51].explain(analyze=True))

        # The console pages: the full Django stack (session, membership lookup, template), in-process.
        try:
            events_url = reverse("audit:events", args=[tenant.slug])
            requests_url = reverse("audit:requests", args=[tenant.slug])
        except (NoReverseMatch, ImportError) as exc:  # a URLconf that does not load: selectors only
            print(f"console pages not measured: {exc}")
            events_url = requests_url = None
        if events_url:
            owner, _ = get_user_model().objects.get_or_create(
                username="bench-owner@bench.test", defaults={"email": "bench-owner@bench.test"}
            )
            Membership.objects.get_or_create(tenant=tenant, user=owner, defaults={"role": Role.OWNER})
            client = Client()
            client.force_login(owner)
            pages = [
                ("page: audit search, no filter", events_url, {}),
                ("page: audit search, free text (htmx)", events_url, {"q": "needle-5"}),
                ("page: audit search, action + actor", events_url, {"action": "guardrail", "actor": "17"}),
                ("page: request log, status", requests_url, {"status": "rejected"}),
            ]
            for title, url, params in pages:
                headers = {"HX-Request": "true"} if "htmx" in title else {}

                def get(url=url, params=params, headers=headers):
                    response = client.get(url, params, headers=headers)
                    assert response.status_code == 200, response.status_code
                    return response

                med, p95, top, _ = timed(get, args.runs)
                worst = max(worst, p95)
                print(f"{title:<44} {med:8.1f} {p95:8.1f} {top:8.1f}")
        print()
        print(f"worst p95: {worst:.1f} ms (target: < 200 ms)")
        return 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(admin_url, name)


if __name__ == "__main__":
    sys.exit(main())
