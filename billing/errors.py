"""Billing errors: one base, specific subclasses; each interface maps them in one place."""


class BillingError(Exception):
    """Base of billing's expected failures (message safe to show)."""


class PriceBackdated(BillingError):
    """A new price version may not take effect in the past: charged usage keeps its price."""


class StatementNotDue(BillingError):
    """The month has not ended (in the tenant's timezone) plus the closing grace period."""


class WebhookDeliveryFailed(BillingError):
    """The alert webhook did not answer 2xx (retried with backoff)."""


class WebhookTargetRefused(BillingError):
    """The alert webhook URL points somewhere Sentinel will not call (e.g. a private address)."""


class InvalidRange(BillingError):
    """A date range that cannot be served (malformed, reversed, too long)."""
