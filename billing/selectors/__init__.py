"""Billing reads. Every function takes the tenant and filters by it.

Cost pages and /v1/usage read the daily breakdown (days in the tenant's timezone); statements and
the rollup export read the daily rollups; the day drill-down and the ledger export read
``UsageEvent``. Money is integer micro-dollars throughout; floats appear only in chart data.

Split by concern; callers use ``billing.selectors.<name>``.
"""

from billing.selectors.budgets import (
    AlertPage,
    BudgetState,
    BurnDown,
    budget_alert_get,
    budget_alert_page,
    budget_burndown,
    budget_states,
    tenants_with_budgets,
)
from billing.selectors.common import (
    MICRO_USD,
    CostPage,
    CostRow,
    GroupBy,
    Totals,
    api_key_get,
    api_key_labels,
    tags_json,
)
from billing.selectors.ledger import (
    EventPage,
    HourCost,
    daily_usage_batches,
    ledger_models,
    usage_by_hour,
    usage_event_batches,
    usage_event_page,
)
from billing.selectors.statements import (
    StatementKeyLine,
    StatementLine,
    StatementMonth,
    StatementView,
    statement_compute,
    statement_get,
    statement_months,
)
from billing.selectors.usage import (
    MAX_REPORT_DAYS,
    CostOverview,
    UsageReport,
    cost_overview,
    previous_range,
    rollup_backlog,
    tag_keys,
    usage_by_day,
    usage_grouped,
    usage_report,
    usage_totals,
)

__all__ = [
    "MAX_REPORT_DAYS",
    "MICRO_USD",
    "AlertPage",
    "BudgetState",
    "BurnDown",
    "CostOverview",
    "CostPage",
    "CostRow",
    "EventPage",
    "GroupBy",
    "HourCost",
    "StatementKeyLine",
    "StatementLine",
    "StatementMonth",
    "StatementView",
    "Totals",
    "UsageReport",
    "api_key_get",
    "api_key_labels",
    "budget_alert_get",
    "budget_alert_page",
    "budget_burndown",
    "budget_states",
    "cost_overview",
    "daily_usage_batches",
    "ledger_models",
    "previous_range",
    "rollup_backlog",
    "statement_compute",
    "statement_get",
    "statement_months",
    "tag_keys",
    "tags_json",
    "tenants_with_budgets",
    "usage_by_day",
    "usage_by_hour",
    "usage_event_batches",
    "usage_event_page",
    "usage_grouped",
    "usage_report",
    "usage_totals",
]
