"""The slow path that repairs every loss: find due reports and hand each to a worker.

Run by Celery beat every ~30 s and by ``manage.py dispatch_due_reports``. It claims due rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` (earliest deadline first), gives each a short dispatch lease
with a token, and enqueues ``deliver_report(id, token)``; the worker that receives the token may
take the report even though the lease is set. Rows whose lease ran out (a worker or a message was
lost) are due again. Two sweepers never hand out the same row twice: SKIP LOCKED plus the lease.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from reporting.choices import ReportStatus
from reporting.dispatch import enqueue
from reporting.models import Report
from reporting.services.escalation import escalations_scan

# Long enough for a queued task to reach a worker; short enough that a lost message is retried soon.
DISPATCH_LEASE = timedelta(minutes=2)


@dataclass
class SweepResult:
    due: list[int] = field(default_factory=list)
    enqueued: int = 0
    escalations: int = 0


def due_reports(*, now: datetime, limit: int):  # noqa: ANN201
    # Uses the partial index report_sweep (status = 'pending').
    return (
        Report.objects.filter(status=ReportStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .order_by(F("due_at").asc(nulls_last=True), "id")[:limit]
    )


def reports_sweep(*, now: datetime | None = None, dry_run: bool = False, limit: int | None = None) -> SweepResult:
    now = now or timezone.now()
    limit = limit or settings.MIR_SWEEP_BATCH
    result = SweepResult()
    if dry_run:
        result.due = list(due_reports(now=now, limit=limit).values_list("id", flat=True))
        return result
    handed: list[tuple[int, uuid.UUID]] = []
    with transaction.atomic():
        rows = list(due_reports(now=now, limit=limit).select_for_update(skip_locked=True).values_list("id", flat=True))
        for report_id in rows:
            token = uuid.uuid4()
            Report.objects.filter(pk=report_id).update(lease_token=token, lease_expires_at=now + DISPATCH_LEASE)
            handed.append((report_id, token))
    result.due = [report_id for report_id, _ in handed]
    # Enqueue after commit, outside the transaction: the broker is not part of it.
    for report_id, token in handed:
        if enqueue(report_id, token):
            result.enqueued += 1
        else:
            # No task carries this token: free the row for the next sweep rather than hold it for the whole
            # dispatch lease. Conditional on the token, so a row someone took meanwhile is left alone.
            Report.objects.filter(pk=report_id, lease_token=token).update(lease_token=None, lease_expires_at=None)
    result.escalations = escalations_scan(now=now)
    return result
