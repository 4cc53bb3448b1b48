from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from sentinel_site import checks  # noqa: F401  registers the tenant-FK system check
