from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        # Sign-ins are recorded once, on the platform chain (tenant NULL) with the user as actor and
        # the user's tenants in the metadata: a user may belong to several tenants, and copying the
        # event onto each tenant's chain would multiply it. Failed sign-ins name no tenant at all.
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        from audit import services

        user_logged_in.connect(services.login_succeeded, dispatch_uid="audit.login_succeeded")
        user_login_failed.connect(services.login_failed, dispatch_uid="audit.login_failed")
        user_logged_out.connect(services.logout_succeeded, dispatch_uid="audit.logout_succeeded")
