"""Ringing the doorbell: enqueue delivery after commit, and never let a broker problem hurt the caller.

If the broker is down the report is still in PostgreSQL with its next_attempt_at; the sweeper
(beat, every ~30 s, or ``manage.py dispatch_due_reports``) enqueues it again. So a failure here is
logged, not raised: the API keeps accepting incidents while the broker is away.

A publish gives up after CELERY_BROKER_CONNECTION_TIMEOUT (2 s). After a failure the process stops
trying for BROKER_PAUSE_SECONDS: otherwise a request whose incident owes reports to several
authorities would wait 2 s for each of them, and a sweep 2 s for each due row, while the broker is away.
"""
from __future__ import annotations

import logging
import time
import uuid

from django.db import transaction

logger = logging.getLogger(__name__)

BROKER_PAUSE_SECONDS = 5.0
_broker_failed_at: float | None = None  # time.monotonic() of this process's last failed publish


def enqueue(report_id: int, lease_token: uuid.UUID | None = None) -> bool:
    from reporting.tasks import deliver_report

    global _broker_failed_at
    failed_at = _broker_failed_at
    if failed_at is not None and time.monotonic() - failed_at < BROKER_PAUSE_SECONDS:
        logger.warning("broker unavailable moments ago: report %s left to the sweeper", report_id)
        return False
    try:
        deliver_report.apply_async(
            args=[report_id, str(lease_token) if lease_token else None], retry=False, ignore_result=True
        )
    except Exception:  # noqa: BLE001  (any broker failure: the sweeper repairs it)
        _broker_failed_at = time.monotonic()
        logger.warning("could not enqueue report %s; the sweeper will pick it up", report_id, exc_info=True)
        return False
    _broker_failed_at = None
    return True


def enqueue_on_commit(report_id: int) -> None:
    transaction.on_commit(lambda: enqueue(report_id), robust=True)
