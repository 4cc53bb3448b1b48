from datetime import date

from django.core.management.base import BaseCommand, CommandError

from billing.services import usage_rollup_days, usage_rollup_pending
from tenants.models import Tenant


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Recompute usage rollups from the ledger: the hours marked stale (default), or every day "
        "from --start to --end of one --tenant (its calendar). Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Tenant slug (with --start/--end)")
        parser.add_argument("--start")
        parser.add_argument("--end")

    def handle(self, *args, tenant: str | None, start: str | None, end: str | None, **options):
        if not (tenant or start or end):
            self.stdout.write(usage_rollup_pending().summary())
            return
        if not (tenant and start and end):
            raise CommandError("--tenant, --start and --end go together")
        target = Tenant.objects.filter(slug=tenant).first()
        if target is None:
            raise CommandError(f"no tenant {tenant!r}")
        first, last = _date(start), _date(end)
        if first > last:
            raise CommandError("--start must be on or before --end")
        self.stdout.write(usage_rollup_days(tenant=target, first=first, last=last).summary())
