"""Celery tasks of the outbound side: thin, idempotent, ids in, one service call each."""
from __future__ import annotations

import uuid

from celery import shared_task

from reporting.services.delivery import report_deliver
from reporting.services.sweep import reports_sweep


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
