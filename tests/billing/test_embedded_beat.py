from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import DailyUsage, PendingRollup
from billing.services import usage_events_insert
from sentinel_site import embedded_beat
from tests.billing.conftest import usage

SCHEDULE = {
    "rollup": {"task": "billing.tasks.rollup_recent_usage", "schedule": 300.0},
    "broken": {"task": "billing.tasks.no_such_task", "schedule": 10.0},
}


@pytest.mark.django_db(transaction=True)  # the beat closes connections between tasks
def test_due_tasks_run_in_process_and_a_failing_one_does_not_stop_the_others(tenant, keys):
    usage_events_insert(records=[usage(tenant, keys[0], at=timezone.now() - timedelta(hours=2), cost=1234)])
    assert PendingRollup.objects.filter(tenant=tenant).exists()
    beat = embedded_beat.EmbeddedBeat(SCHEDULE, now=0.0)

    assert beat.run_due(1.0) == []  # nothing is due before the first round
    assert beat.run_due(5.0) == ["rollup"]  # "broken" failed, was logged, and will be tried again

    assert not PendingRollup.objects.filter(tenant=tenant).exists()
    assert sum(row.cost_micros for row in DailyUsage.objects.filter(tenant=tenant)) == 1234
    assert beat.run_due(6.0) == []  # next round only after each task's interval
    assert beat.due["rollup"] == 305.0 and beat.due["broken"] == 15.0


def test_the_thread_starts_only_without_redis(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    assert embedded_beat.start() is False
    settings.REDIS_URL = ""
    settings.SENTINEL_EMBEDDED_BEAT = False
    assert embedded_beat.start() is False
