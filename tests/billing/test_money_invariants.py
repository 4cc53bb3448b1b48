import csv
import io
import random
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from audit.models import RequestLog
from billing.calendar import local_today
from billing.models import DailyUsage, HourlyUsage, UsageEvent
from billing.pricing import quote_for
from billing.services import usage_rollup_pending, usage_spool_drain
from gateway.catalog_sync import catalog_sync
from tenants.models import ApiKey
from tests.billing.conftest import console_for, make_key, submit_all, usage
from tests.factories import TenantFactory

PER_TENANT = 1_500
DAYS = 45
MODELS = ["gpt-test", "claude-test", "embed-test", "unpriced-test"]
TAGS = [
    {},
    {"project": "alpha"},
    {"project": "beta", "agent": "triage"},
    {"app": "web"},
    {"project": "alpha", "app": "cli"},
]


def price_catalog() -> None:
    catalog_sync(
        now=timezone.now() - timedelta(days=DAYS + 10),
        data={
            "providers": [{"name": "mock-openai", "kind": "mock"}, {"name": "mock-backup", "kind": "mock"}],
            "models": [
                {
                    "name": "gpt-test",
                    "routes": [{"provider": "mock-openai"}],
                    "price": {"input": 1.0, "cached_input": 0.5, "output": 2.0},
                },
                {
                    "name": "claude-test",
                    "routes": [{"provider": "mock-openai"}],
                    "price": {"input": 3.0, "cached_input": 0.3, "output": 15.0},
                },
                {"name": "embed-test", "routes": [{"provider": "mock-openai"}], "price": {"input": 0.02, "output": 0}},
                {"name": "unpriced-test", "routes": [{"provider": "mock-openai"}]},
            ],
        },
    )


def traffic(tenant, keys, seed: int):
    """A gateway's worth of requests: streams cut by the client, cache hits, retried and
    fallen-back attempts, upstream errors, tagged and untagged, over many days."""
    rng = random.Random(seed)
    now = timezone.now()
    records = []
    for i in range(PER_TENANT):
        at = now - timedelta(seconds=rng.randint(0, DAYS * 86400))
        model = rng.choice(MODELS)
        prompt, cached = rng.randint(5, 6000), 0
        completion = 0 if model == "embed-test" else rng.randint(1, 1500)
        if rng.random() < 0.2:
            cached = rng.randint(0, prompt)
        kind = rng.random()
        status, http_status, estimated, cache_hit, attempts = "ok", 200, False, False, 1
        if kind < 0.08:
            status, http_status, estimated = "client_closed", 499, True  # tokens counted up to the cut
        elif kind < 0.14:
            cache_hit = True
        elif kind < 0.19:
            status, http_status, completion = "error", 502, 0
        elif kind < 0.27:
            attempts = rng.randint(2, 3)  # retried / fell back; the answering attempt is charged
        quote = quote_for(tenant_id=tenant.pk, model_name=model, at=at)
        cost = 0
        if quote is not None and not cache_hit and status != "error":
            cost = quote.cost_micros(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion)
        records.append(
            usage(
                tenant,
                rng.choice(keys),
                at=at,
                model=model,
                prompt=prompt,
                cached=cached,
                completion=completion,
                cost=cost,
                request_id=f"req_{tenant.slug}_{i:05d}",
                price_id=quote.price_id if quote else None,
                status=status,
                http_status=http_status,
                estimated=estimated,
                cache_hit=cache_hit,
                stream=estimated or rng.random() < 0.4,
                attempts=attempts,
                route="mock-backup/gpt-test" if attempts > 1 else f"mock-openai/{model}",
                tags=rng.choice(TAGS),
                latency_ms=rng.randint(20, 9000),
            )
        )
    return records


def ledger(tenant, **filters) -> tuple[int, int]:
    row = UsageEvent.objects.filter(tenant=tenant, **filters).aggregate(n=Count("pk"), c=Sum("cost_micros"))
    return row["n"], row["c"] or 0


def api_usage(server, key, start, end, group_by: str, **extra) -> dict:
    response = httpx.get(
        f"{server.url}/v1/usage",
        params={"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by, **extra},
        headers={"Authorization": f"Bearer {key.token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ledger_rollups_api_pages_and_csv_agree_to_the_micro_dollar(gateway, tenant, other_tenant, user):
    price_catalog()
    other_tenant.timezone = "America/New_York"
    other_tenant.save(update_fields=["timezone"])
    third = TenantFactory(name="Tenant C", slug="tenant-c", timezone="Asia/Kolkata")
    tenants = [tenant, other_tenant, third]
    keys = {
        t.pk: [make_key(t, user, f"{t.slug}-reader", scopes=[ApiKey.Scope.USAGE_READ])]
        + [make_key(t, user, f"{t.slug}-app-{n}") for n in range(3)]
        for t in tenants
    }
    records = [r for n, t in enumerate(tenants) for r in traffic(t, keys[t.pk], seed=n)]
    resubmitted = random.Random(9).sample(records, 120)  # the same request handed over twice

    submit_all(records + resubmitted)
    drained = usage_spool_drain(max_seconds=60)
    usage_rollup_pending()

    assert (drained.inserted, drained.duplicates, drained.remaining) == (len(records), len(resubmitted), 0)
    for t in tenants:
        mine = [r for r in records if r.tenant_id == t.pk]
        count, total = ledger(t)
        assert (count, total) == (len(mine), sum(r.cost_micros for r in mine))
        assert RequestLog.objects.filter(tenant=t).count() == count
        assert DailyUsage.objects.filter(tenant=t).aggregate(c=Sum("cost_micros"), n=Sum("requests")) == {
            "c": total,
            "n": count,
        }
        assert HourlyUsage.objects.filter(tenant=t).aggregate(c=Sum("cost_micros"), n=Sum("requests")) == {
            "c": total,
            "n": count,
        }

        end = local_today(t)
        start = end - timedelta(days=DAYS + 1)
        reader, app = keys[t.pk][0], keys[t.pk][1]
        for group_by, extra in [("day", {}), ("model", {}), ("key", {}), ("tag", {"tag_key": "project"})]:
            body = api_usage(gateway, reader, start, end, group_by, **extra)
            assert body["scope"] == "tenant"
            assert body["total"]["cost_micros"] == total, group_by
            assert body["total"]["requests"] == count, group_by
            assert Decimal(body["total"]["cost_usd"]) * 1_000_000 == total
            assert sum(row["cost_micros"] for row in body["data"]) == total, group_by
        own = api_usage(gateway, app, start, end, "model")
        assert own["scope"] == "key"
        assert (own["total"]["requests"], own["total"]["cost_micros"]) == ledger(t, api_key=app)

        console = console_for(t)
        page = console.get(reverse("billing:costs", kwargs={"tenant_slug": t.slug}), {"start": start, "end": end})
        assert page.context["overview"].totals.cost_micros == total
        assert page.context["overview"].totals.requests == count
        assert sum(r.totals.cost_micros for r in page.context["overview"].by_day) == total
        assert f'data-micros="{total}"'.encode() in page.content
        for group in ("model", "key", "day"):
            table = console.get(
                reverse("billing:costs", kwargs={"tenant_slug": t.slug}),
                {"start": start, "end": end, "group": group},
                headers={"HX-Request": "true"},
            ).context["table"]
            if group != "day":
                assert sum(r.totals.cost_micros for r in table.rows) == total, group

        exported = csv_rows(
            console.get(
                reverse("billing:export_usage_csv", kwargs={"tenant_slug": t.slug}), {"start": start, "end": end}
            )
        )
        assert len(exported) == count
        assert sum(int(r["cost_micros"]) for r in exported) == total
        assert sum(Decimal(r["cost_usd"]) for r in exported) * 1_000_000 == total
        daily = csv_rows(
            console.get(
                reverse("billing:export_rollup_csv", kwargs={"tenant_slug": t.slug}), {"start": start, "end": end}
            )
        )
        assert sum(int(r["cost_micros"]) for r in daily) == total
        assert sum(int(r["requests"]) for r in daily) == count
