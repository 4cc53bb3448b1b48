class TenantsError(Exception):
    """Base of every tenants error an interface maps to a response."""


class TenantSlugTaken(TenantsError):
    pass


class LastOwner(TenantsError):
    """The last owner of a tenant cannot be removed or demoted."""


class InvalidInvitation(TenantsError):
    pass


class PermissionDenied(TenantsError):
    pass
