import signal
import time

from django.core.management.base import BaseCommand, CommandError

from billing.services import usage_spool_drain
from billing.services.spool import DEFAULT_BATCH, DEFAULT_CLAIM_IDLE_MS
from sentinel_site import redis as sredis


class Command(BaseCommand):
    help = (
        "Drain the usage spool (Redis Stream) into the ledger: until it is empty, for at most "
        "--max-seconds, or with --follow until SIGTERM/SIGINT (the current batch finishes first)."
    )

    # an operational command (shutdown hooks, recovery): start fast, skip the full system check
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--max-seconds", type=float, default=60.0)
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
        parser.add_argument(
            "--claim-idle-ms",
            type=int,
            default=DEFAULT_CLAIM_IDLE_MS,
            help="Take over entries another consumer left pending this long (0: at once, when it is known dead)",
        )
        parser.add_argument("--follow", action="store_true", help="Keep draining as entries arrive")
        parser.add_argument("--interval", type=float, default=0.5, help="Pause between drains with --follow")

    def handle(self, *args, max_seconds, batch_size, claim_idle_ms, follow, interval, **options):
        if not sredis.enabled():
            raise CommandError("REDIS_URL is not set: there is no spool (usage goes straight to the ledger)")
        if batch_size < 1 or max_seconds <= 0:
            raise CommandError("--batch-size and --max-seconds must be positive")
        if not follow:
            result = usage_spool_drain(max_seconds=max_seconds, batch_size=batch_size, claim_idle_ms=claim_idle_ms)
            self.stdout.write(result.summary())
            return
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        total = 0
        while not stopping:
            result = usage_spool_drain(max_seconds=max_seconds, batch_size=batch_size, claim_idle_ms=claim_idle_ms)
            total += result.inserted
            if result.read == 0:
                time.sleep(interval)
        self.stdout.write(f"usage spool: stopped after inserting {total} events")
