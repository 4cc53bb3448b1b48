"""Gateway maintenance tasks (Celery beat schedule in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from gateway import limits


@shared_task(name="gateway.tasks.reconcile_reservations")
def reconcile_reservations() -> dict[str, int]:
    """Release budget reservations past their deadline (their process died before settling).
    Safe to run twice or concurrently: each release is one atomic script."""
    result = limits.reservations_reconcile()
    return {"released": result.released, "released_micros": result.released_micros, "dropped": result.dropped}
