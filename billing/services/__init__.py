"""Billing writes. ``usage_submit`` is the gateway's one hand-off into billing.

Split by concern; everything callers use is re-exported here (``billing.services.<name>``).
"""

from billing.services.alerts import (
    alert_thresholds,
    budget_alert_email,
    budget_alert_webhook,
    budget_alerts_check,
    webhook_signature,
)
from billing.services.ledger import usage_events_insert
from billing.services.prices import price_adjustment_create, price_version_create
from billing.services.rollups import (
    RollupResult,
    usage_rollup_days,
    usage_rollup_pending,
    usage_rollup_window,
)
from billing.services.spool import DrainResult, usage_spool_drain, usage_spool_lag, usage_submit
from billing.services.statements import statement_close, statements_close_due

__all__ = [
    "DrainResult",
    "RollupResult",
    "alert_thresholds",
    "budget_alert_email",
    "budget_alert_webhook",
    "budget_alerts_check",
    "price_adjustment_create",
    "price_version_create",
    "statement_close",
    "statements_close_due",
    "usage_events_insert",
    "usage_rollup_days",
    "usage_rollup_pending",
    "usage_rollup_window",
    "usage_spool_drain",
    "usage_spool_lag",
    "usage_submit",
    "webhook_signature",
]
