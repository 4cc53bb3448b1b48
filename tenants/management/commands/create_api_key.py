from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants.models import BudgetPeriod, Tenant
from tenants.services import api_key_create


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise CommandError(f"expected a positive number, got {number}")
    return number


class Command(BaseCommand):
    help = "Mint an API key for a tenant. Prints only the secret on stdout (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--models", default="", help="comma-separated model names (default: the tenant's)")
        parser.add_argument("--rpm")
        parser.add_argument("--tpm")
        parser.add_argument("--budget-usd")
        parser.add_argument("--budget-period", default=BudgetPeriod.MONTH)
        parser.add_argument("--expires-in-days")
        parser.add_argument("--scopes", default="", help="comma-separated: usage:read,audit:read")

    def handle(self, *args, **o):
        tenant = Tenant.objects.filter(slug=o["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {o['slug']!r}")
        if o["budget_period"] not in BudgetPeriod.values:
            raise CommandError(f"--budget-period must be one of {', '.join(BudgetPeriod.values)}")
        budget = None
        if o["budget_usd"] is not None:
            try:
                budget = Decimal(o["budget_usd"])
            except InvalidOperation:
                raise CommandError(f"--budget-usd: {o['budget_usd']!r} is not a number") from None
            if budget < 0 or not budget.is_finite():
                raise CommandError("--budget-usd must be zero or more")
        models = [m.strip() for m in o["models"].split(",") if m.strip()]
        from gateway.models import Model

        unknown = set(models) - set(Model.objects.filter(name__in=models).values_list("name", flat=True))
        if unknown:
            raise CommandError(f"--models: unknown models {', '.join(sorted(unknown))}")
        scopes = [s.strip() for s in o["scopes"].split(",") if s.strip()]
        from tenants.models import ApiKey

        bad_scopes = set(scopes) - set(ApiKey.Scope.values)
        if bad_scopes:
            raise CommandError(f"--scopes: unknown {', '.join(sorted(bad_scopes))}")
        expires = None
        if o["expires_in_days"] is not None:
            expires = timezone.now() + timedelta(days=_positive_int(o["expires_in_days"]))
        try:
            _, token = api_key_create(
                tenant=tenant,
                name=o["name"],
                allowed_models=models,
                rpm=_positive_int(o["rpm"]) if o["rpm"] else None,
                tpm=_positive_int(o["tpm"]) if o["tpm"] else None,
                budget_usd=budget,
                budget_period=o["budget_period"],
                expires_at=expires,
                scopes=scopes,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(token)
