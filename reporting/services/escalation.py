"""Telling people a stage is at risk: at 50/75/90 % of its window, when overdue, on permanent failure.

Each level is raised once per report (a unique constraint), shown in the admin, and e-mailed after
commit through Django's mail settings.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from reporting.choices import OPEN_REPORT_STATUSES, EscalationLevel
from reporting.models import Escalation, Report
from reporting.obligations import escalation_due

logger = logging.getLogger(__name__)


def _level(point: float) -> str:
    # Rules may choose their own points (e.g. 0.6); the standard ones match EscalationLevel's names.
    return EscalationLevel.OVERDUE if point >= 1.0 else f"window_{round(point * 100)}"


def _recipients() -> list[str]:
    if settings.MIR_ESCALATION_EMAILS:
        return list(settings.MIR_ESCALATION_EMAILS)
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(users.values_list("email", flat=True))


def _notify(escalation_id: int) -> None:
    escalation = Escalation.objects.select_related("report__incident", "report__destination").get(pk=escalation_id)
    report = escalation.report
    subject = (f"[{escalation.get_level_display()}] {report.subject} {report.stage_name} "
               f"to {report.destination.name}")
    due = report.due_at.isoformat() if report.due_at else "not yet started"
    about = f"{report.incident.reference} {report.incident.title}" if report.incident_id else report.subject
    body = f"{escalation.message}\n\nIncident: {about}\nDue: {due}\n"
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, _recipients(), fail_silently=False)
    except Exception:  # noqa: BLE001  (mail trouble must not undo the escalation; it stays in the admin)
        logger.exception("could not e-mail escalation %s", escalation_id)
        return
    Escalation.objects.filter(pk=escalation_id).update(notified_at=timezone.now())


def escalation_raise(*, report: Report, level: str, message: str) -> Escalation | None:
    """Record one escalation (once per level) and e-mail it after commit. Caller's transaction or its own."""
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(report=report, level=level, message=message)
    except IntegrityError:
        return None  # already raised at this level
    transaction.on_commit(lambda: _notify(escalation.pk), robust=True)
    return escalation


def escalations_scan(*, now=None) -> int:  # noqa: ANN001
    """Raise the window and overdue escalations every open stage has reached. Returns how many were raised."""
    now = now or timezone.now()
    raised = 0
    reports = (
        Report.objects.filter(status__in=OPEN_REPORT_STATUSES, due_at__isnull=False, clock_started_at__isnull=False)
        .select_related("rule", "incident", "destination")
        .prefetch_related("escalations")
    )
    for report in reports:
        have = {e.level for e in report.escalations.all()}
        points = escalation_due(clock_started_at=report.clock_started_at, due_at=report.due_at, now=now,
                                points=report.rule.escalation_points)
        for point in points:
            level = _level(point)
            if level in have:
                continue
            text = ("overdue: the deadline has passed and the stage is not delivered" if point == 1.0
                    else f"{int(point * 100)} % of the window has passed and the stage is not delivered")
            if escalation_raise(report=report, level=level, message=f"{report.stage_name}: {text} ({report.status})"):
                raised += 1
    return raised
