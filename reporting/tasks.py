"""Celery tasks of the outbound side: thin, idempotent, ids in, one service call each."""
from __future__ import annotations

import uuid

from celery import shared_task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

from reporting.services.delivery import report_deliver
from reporting.services.sweep import reports_sweep


@task_prerun.connect
@task_postrun.connect
def release_stale_connections(sender=None, **kwargs) -> None:  # noqa: ANN001, ANN003  (Celery signal signature)
    """Around every task (any app's), treat database connections as Django treats them around a request.

    Celery's fix-up would otherwise close them all each time (settings.CELERY_DB_REUSE_MAX stops that), and
    a delivery would open a new PostgreSQL connection every time: about half the worker's throughput
    (docs/performance.md). A connection older than CONN_MAX_AGE, broken, or left in a failed state is
    closed here; the next query opens a fresh one, health-checked first when CONN_HEALTH_CHECKS is on.
    Eager calls (tests, a shell) run inside the caller's connection and transaction: left alone, as the
    fix-up leaves them.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close_old_connections()


@shared_task(
    name="reporting.deliver_report", acks_late=True, reject_on_worker_lost=True, time_limit=120,
    soft_time_limit=100, ignore_result=True,
)
def deliver_report(report_id: int, lease_token: str | None = None) -> str:
    # A missing, delivered, leased-by-another or not-yet-due report makes this a no-op (the claim).
    return report_deliver(report_id=report_id, lease_token=uuid.UUID(lease_token) if lease_token else None).outcome


@shared_task(name="reporting.sweep_due_reports", acks_late=True, time_limit=120, soft_time_limit=100,
             ignore_result=True)
def sweep_due_reports() -> int:
    return reports_sweep().enqueued
