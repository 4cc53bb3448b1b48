"""Verify the audit hash chains: ``manage.py verify_audit_chain [--tenant SLUG]``.

Without ``--tenant`` every tenant's chain and the platform chain are checked. A broken chain is
reported as one line naming the chain, the seq of the first broken link and why; the command then
exits non-zero. On success it prints one summary line (and each chain's head hash with -v 2:
record it elsewhere to detect a later removal of the newest rows).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.errors import ChainBroken
from audit.selectors import audit_chain_verify
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify the audit log's per-tenant hash chains; exits non-zero at the first broken link."
    requires_system_checks: list[str] = []  # reads the database only; must run even if a URLconf is broken

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="verify only this tenant's chain")

    def handle(self, *args, tenant: str | None = None, verbosity: int = 1, **options) -> None:
        if tenant:
            found = Tenant.objects.filter(slug=tenant).first()
            if found is None:
                raise CommandError(f"no tenant with slug {tenant!r}")
            chains: list[Tenant | None] = [found]
        else:
            chains = [None, *Tenant.objects.order_by("slug")]
        reports, broken = [], []
        for chain in chains:
            try:
                reports.append(audit_chain_verify(tenant=chain))
            except ChainBroken as exc:
                broken.append(str(exc))
        if broken:
            if len(broken) == 1:
                raise CommandError(f"audit chain broken: {broken[0]}")
            for line in broken:
                self.stderr.write(f"audit chain broken: {line}")
            raise CommandError(f"{len(broken)} of {len(chains)} audit chains are broken (first: {broken[0]})")
        events = sum(r.count for r in reports)
        anchored = sum(1 for r in reports if r.anchored)
        self.stdout.write(
            f"audit chains OK: {len(reports)} chain{'s' if len(reports) != 1 else ''}, {events} events verified"
            + (f", {anchored} starting at a retention anchor" if anchored else "")
        )
        if verbosity >= 2:
            for r in reports:
                self.stdout.write(f"  {r.label}: {r.count} events, seq {r.first_seq}..{r.last_seq}, head {r.head_hash}")
