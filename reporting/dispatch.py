"""Ringing the doorbell: enqueue delivery after commit, and never let a broker problem hurt the caller.

If the broker is down the report is still in PostgreSQL with its next_attempt_at; the sweeper
(beat, every ~30 s, or ``manage.py dispatch_due_reports``) enqueues it again. So a failure here is
logged, not raised: the API keeps accepting incidents while the broker is away.
"""
from __future__ import annotations

import logging
import uuid

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue(report_id: int, lease_token: uuid.UUID | None = None) -> bool:
    from reporting.tasks import deliver_report

    try:
        deliver_report.apply_async(
            args=[report_id, str(lease_token) if lease_token else None], retry=False, ignore_result=True
        )
    except Exception:  # noqa: BLE001  (any broker failure: the sweeper repairs it)
        logger.warning("could not enqueue report %s; the sweeper will pick it up", report_id, exc_info=True)
        return False
    return True


def enqueue_on_commit(report_id: int) -> None:
    transaction.on_commit(lambda: enqueue(report_id), robust=True)
