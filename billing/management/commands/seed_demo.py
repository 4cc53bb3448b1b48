"""A demo world for a first look: two tenants, members in each role, keys, a month of usage.

Idempotent: running it again changes nothing (usage rows have deterministic request ids).
"""

import random
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.pricing import quote_for
from billing.services import statements_close_due, usage_events_insert, usage_rollup_pending
from billing.usage import UsageRecord
from gateway.catalog_sync import catalog_sync
from gateway.catalog_sync import load as load_catalog
from tenants.models import ApiKey, Role, Tenant
from tenants.services import api_key_create, membership_add, tenant_create

DEMO_PASSWORD = "sentinel-demo"
TENANTS = [
    ("acme", "Acme Corp", "Europe/Paris"),
    ("globex", "Globex", "America/New_York"),
]
KEYS = [
    ("backend-prod", Decimal("500"), 600, None),
    ("support-bot", Decimal("120"), 300, {"project": "support"}),
    ("data-pipeline", Decimal("80"), 120, {"project": "analytics"}),
    ("staging", Decimal("20"), 60, {"env": "staging"}),
    ("notebooks", None, 30, {"team": "research"}),
]
MODELS = [("mock-gpt", 0.7), ("mock-claude", 0.3)]


class Command(BaseCommand):
    help = "Seed a demo tenant with members in every role, keys and a month of usage (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=31)

    def handle(self, *args, days: int, **options):
        # List prices in force from the start of the demo period, so its usage is charged.
        since = timezone.now() - timedelta(days=days + 1)
        result = catalog_sync(data=load_catalog(settings.SENTINEL_CATALOG), now=since)
        self.stdout.write(result.summary())
        User = get_user_model()
        with transaction.atomic():
            operator, created = User.objects.get_or_create(
                username="operator@sentinel.test",
                defaults={"email": "operator@sentinel.test", "is_staff": True, "is_superuser": True},
            )
            if created:
                operator.set_password(DEMO_PASSWORD)
                operator.save(update_fields=["password"])
            users = {}
            for role in Role.values:
                email = f"{role}@acme.test"
                user, created = User.objects.get_or_create(username=email, defaults={"email": email})
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
                users[role] = user
        new_tokens = []
        total_events = 0
        for slug, name, tz in TENANTS:
            tenant = Tenant.objects.filter(slug=slug).first()
            if tenant is None:
                tenant, _, _ = tenant_create(slug=slug, name=name, timezone_name=tz)
                tenant.budget_usd = Decimal("1000") if slug == "acme" else Decimal("250")
                tenant.default_rpm = 600
                tenant.alert_thresholds = [50, 80, 100]
                tenant.guardrails = {"pii": "redact", "injection": "flag"}
                tenant.cache_ttl_seconds = 300
                tenant.save(
                    update_fields=[
                        "budget_usd",
                        "default_rpm",
                        "alert_thresholds",
                        "guardrails",
                        "cache_ttl_seconds",
                    ]
                )
            if slug == "acme":
                for role, user in users.items():
                    membership_add(tenant=tenant, user=user, role=role)
            else:
                membership_add(tenant=tenant, user=users[Role.OWNER], role=Role.OWNER)
            keys = list(ApiKey.objects.filter(tenant=tenant).order_by("created_at"))
            if not keys:
                for key_name, budget, rpm, tags in KEYS:
                    key, token = api_key_create(
                        tenant=tenant,
                        name=key_name,
                        budget_usd=budget,
                        rpm=rpm,
                        tags=tags or {},
                        actor=users[Role.OWNER],
                        scopes=["usage:read"] if key_name == "backend-prod" else [],
                    )
                    keys.append(key)
                    new_tokens.append((tenant.slug, key_name, token))
            total_events += self._usage(tenant, keys, days)
        self.stdout.write(f"demo seeded: {len(TENANTS)} tenants, {total_events} usage events over {days} days")
        self.stdout.write(usage_rollup_pending().summary())
        self.stdout.write(f"statements closed: {len(statements_close_due())}")
        self.stdout.write(
            f"console logins (password {DEMO_PASSWORD}): "
            + ", ".join(f"{r}@acme.test" for r in Role.values)
            + ", operator@sentinel.test"
        )
        for slug, key_name, token in new_tokens:
            self.stdout.write(f"api key {slug}/{key_name} (shown once): {token}")

    def _usage(self, tenant: Tenant, keys: list[ApiKey], days: int) -> int:
        rng = random.Random(f"seed-demo-{tenant.slug}")  # deterministic: same rows every run
        now = timezone.now()
        records = []
        quotes = {}
        for day in range(days, -1, -1):
            base = now - timedelta(days=day)
            weekday_factor = 0.5 if base.weekday() >= 5 else 1.0
            for n in range(int(rng.randint(30, 60) * weekday_factor)):
                at = base.replace(hour=rng.randint(7, 20), minute=rng.randint(0, 59), second=rng.randint(0, 59))
                if at > now:
                    continue
                key = rng.choices(keys, weights=[5, 3, 2, 1, 1][: len(keys)])[0]
                model = rng.choices([m for m, _ in MODELS], weights=[w for _, w in MODELS])[0]
                if (model, at.date()) not in quotes:
                    quotes[(model, at.date())] = quote_for(tenant_id=tenant.pk, model_name=model, at=at)
                quote = quotes[(model, at.date())]
                roll = rng.random()
                status, http_status = ("ok", 200)
                if roll < 0.03:
                    status, http_status = ("error", 502)
                elif roll < 0.05:
                    status, http_status = ("client_closed", 499)
                cache_hit = status == "ok" and rng.random() < 0.08
                prompt = rng.randint(200, 3000)
                cached = rng.choice([0, 0, 0, prompt // 2])
                completion = 0 if status == "error" else rng.randint(50, 900)
                cost = (
                    0
                    if (cache_hit or quote is None or status == "error")  # failed upstream calls are not charged
                    else quote.cost_micros(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion)
                )
                records.append(
                    UsageRecord(
                        request_id=f"demo-{tenant.slug}-{at:%Y%m%d}-{n}",
                        tenant_id=tenant.pk,
                        api_key_id=key.pk,
                        model=model,
                        created_at=at,
                        provider="mock",
                        route=f"mock/{model}",
                        prompt_tokens=prompt,
                        cached_tokens=cached,
                        completion_tokens=completion,
                        cost_micros=cost,
                        price_id=quote.price_id if quote else None,
                        adjustment_percent=quote.adjustment_percent if quote else Decimal(0),
                        status=status,
                        http_status=http_status,
                        latency_ms=rng.randint(250, 4000),
                        ttft_ms=rng.randint(80, 600),
                        estimated=status == "client_closed",
                        cache_hit=cache_hit,
                        stream=rng.random() < 0.5,
                        tags=dict(key.tags),
                    )
                )
        return len(usage_events_insert(records=records))
