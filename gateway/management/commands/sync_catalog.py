from django.core.management.base import BaseCommand, CommandError

from gateway.catalog_sync import CatalogError, catalog_sync_file


class Command(BaseCommand):
    help = "Import providers, models, routes and prices from a catalog YAML file (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--verbose-changes", action="store_true", help="list every change")

    def handle(self, *args, file: str, verbose_changes: bool, **options):
        try:
            result = catalog_sync_file(path=file)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        if verbose_changes:
            for line in result.changes:
                self.stdout.write(f"  {line}")
        self.stdout.write(result.summary())
