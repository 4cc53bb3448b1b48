import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from audit.models import RequestLog
from billing.models import UsageEvent
from billing.services.spool import GROUP, spool_key
from sentinel_site import redis as sredis
from tests.billing.conftest import make_key, submit_all, usage
from tests.conftest import ROOT, server_env

TOTAL = 12_000


def drain_command(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "drain_usage_spool", *args]


def ledger_count(tenant) -> int:
    return UsageEvent.objects.filter(tenant=tenant).count()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_consumer_killed_mid_batch_loses_nothing_and_duplicates_nothing(tenant, user):
    key = make_key(tenant, user, "bulk")
    now = timezone.now()
    records = [usage(tenant, key, at=now - timedelta(seconds=i), cost=1 + i % 997) for i in range(TOTAL)]
    submit_all(records)
    client = sredis.sync_client()
    killed_holding_entries = 0
    for _ in range(6):
        before = ledger_count(tenant)
        proc = subprocess.Popen(
            drain_command("--follow", "--batch-size", "1000", "--claim-idle-ms", "0"),
            cwd=ROOT,
            env=server_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while ledger_count(tenant) < before + 1500 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        if client.xpending(spool_key(), GROUP)["pending"]:
            killed_holding_entries += 1  # it died between reading a batch and acknowledging it
        if ledger_count(tenant) >= TOTAL * 0.8:
            break
    assert 0 < ledger_count(tenant) < TOTAL
    assert killed_holding_entries > 0

    restart = subprocess.run(
        drain_command("--claim-idle-ms", "0", "--max-seconds", "120"),
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        timeout=180,
    )

    assert restart.returncode == 0, restart.stderr.decode()[-2000:]
    events = UsageEvent.objects.filter(tenant=tenant)
    assert events.count() == TOTAL
    assert events.aggregate(s=Sum("cost_micros"))["s"] == sum(r.cost_micros for r in records)
    assert RequestLog.objects.filter(tenant=tenant).count() == TOTAL
    assert client.xlen(spool_key()) == 0
    assert client.xpending(spool_key(), GROUP)["pending"] == 0
