from datetime import UTC, date, datetime, timedelta

import pytest
from django.db.models import Sum
from django.urls import reverse

from audit.models import AuditEvent
from billing.errors import StatementNotDue
from billing.models import MonthlyStatement, UsageEvent
from billing.services import statement_close, statements_close_due, usage_events_insert, usage_rollup_pending
from tests.billing.conftest import usage

pytestmark = pytest.mark.django_db

OCTOBER = date(2026, 10, 1)


def october_usage(tenant, key, n=10, cost=1_000):
    return [usage(tenant, key, at=datetime(2026, 10, 1 + i, 9, tzinfo=UTC), cost=cost + i) for i in range(n)]


def test_a_month_closes_only_after_it_ended_in_the_tenants_timezone(tenant, keys):
    tenant.timezone = "America/Los_Angeles"  # October ends at 07:00 UTC on Nov 1
    tenant.save(update_fields=["timezone"])
    usage_events_insert(records=october_usage(tenant, keys[0]))

    with pytest.raises(StatementNotDue):
        statement_close(tenant=tenant, month=OCTOBER, now=datetime(2026, 11, 1, 8, 0, tzinfo=UTC))

    statement = statement_close(tenant=tenant, month=OCTOBER, now=datetime(2026, 11, 1, 9, 1, tzinfo=UTC))
    assert statement.cost_micros == UsageEvent.objects.filter(tenant=tenant).aggregate(s=Sum("cost_micros"))["s"]
    assert statement.time_zone == "America/Los_Angeles"
    assert statement.period_start == datetime(2026, 10, 1, 7, tzinfo=UTC)


def test_a_closed_statement_is_frozen_and_late_usage_is_shown_beside_it(tenant, keys, console):
    usage_events_insert(records=october_usage(tenant, keys[0]))
    closed = statement_close(tenant=tenant, month=OCTOBER, now=datetime(2026, 11, 2, tzinfo=UTC))
    late = usage(tenant, keys[1], at=datetime(2026, 10, 31, 23, tzinfo=UTC), cost=555)
    usage_events_insert(records=[late])
    usage_rollup_pending()

    again = statement_close(tenant=tenant, month=OCTOBER, now=datetime(2026, 11, 3, tzinfo=UTC))
    page = console.get(reverse("billing:statement", kwargs={"tenant_slug": tenant.slug, "year": 2026, "month": 10}))

    assert again.pk == closed.pk and again.cost_micros == closed.cost_micros
    statement = page.context["statement"]
    assert statement.is_closed and statement.totals.cost_micros == closed.cost_micros
    assert statement.late_micros == 555
    assert b"was recorded for this month after it closed" in page.content
    assert AuditEvent.objects.filter(tenant=tenant, action="statement.closed").count() == 1


def test_due_months_close_for_every_tenant_with_usage(tenant, other_tenant, keys, other_keys):
    usage_events_insert(records=october_usage(tenant, keys[0]) + october_usage(other_tenant, other_keys[0], n=3))
    usage_events_insert(records=[usage(tenant, keys[0], at=datetime(2026, 11, 5, tzinfo=UTC))])
    usage_rollup_pending()

    closed = statements_close_due(now=datetime(2026, 11, 20, tzinfo=UTC))

    assert sorted((s.tenant_id, s.month) for s in closed) == sorted([(tenant.pk, OCTOBER), (other_tenant.pk, OCTOBER)])
    assert statements_close_due(now=datetime(2026, 11, 21, tzinfo=UTC)) == []
    assert not MonthlyStatement.objects.filter(month=date(2026, 11, 1)).exists()


def test_the_statement_itemises_keys_and_adds_up(tenant, keys, console):
    records = october_usage(tenant, keys[0], n=4) + october_usage(tenant, keys[1], n=3, cost=20_000)
    usage_events_insert(records=records)
    statement_close(tenant=tenant, month=OCTOBER, now=datetime(2026, 11, 2, tzinfo=UTC))

    statement = console.get(
        reverse("billing:statement", kwargs={"tenant_slug": tenant.slug, "year": 2026, "month": 10})
    ).context["statement"]

    assert {k.name: k.totals.cost_micros for k in statement.keys} == {
        "backend": sum(r.cost_micros for r in records[:4]),
        "support-bot": sum(r.cost_micros for r in records[4:]),
    }
    assert sum(line.totals.cost_micros for line in statement.lines) == statement.totals.cost_micros
    assert statement.totals.cost_micros == sum(r.cost_micros for r in records)
    assert statement.month == OCTOBER and statement.last_day == date(2026, 10, 31)
    assert statement.time_zone == "UTC" and (statement.closed_at - datetime(2026, 11, 2, tzinfo=UTC)) < timedelta(1)
