from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from tenants.errors import TenantSlugTaken
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant and optionally its owner (a new owner gets a one-time password)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--owner-email")
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, slug: str, name: str, owner_email: str | None, timezone: str, **options):
        if owner_email:
            try:
                validate_email(owner_email)
            except ValidationError:
                raise CommandError(f"--owner-email: {owner_email!r} is not a valid email address") from None
        try:
            tenant, owner, password = tenant_create(
                slug=slug, name=name, owner_email=owner_email, timezone_name=timezone
            )
        except TenantSlugTaken as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"tenant {tenant.slug} created")
        if owner is not None and password:
            self.stdout.write(f"owner {owner.email} created; one-time password (change at first login): {password}")
        elif owner is not None:
            self.stdout.write(f"owner {owner.email} (existing user) added")
