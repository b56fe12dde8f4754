"""A reviewer acknowledges a delivered report on behalf of their authority (once per report)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.choices import ReportStatus
from reporting.models import Report
from reporting.portal.models import Acknowledgement, Reviewer


@dataclass(frozen=True)
class AcknowledgeResult:
    acknowledgement: Acknowledgement
    created: bool  # False: the authority had already acknowledged it (perhaps through a colleague)


def report_in_reviewer_scope(*, reviewer: Reviewer, report: Report) -> None:
    """Refuse a report the reviewer may not act on; the views already answer 404, this guards other callers."""
    if report.status != ReportStatus.DELIVERED or report.destination.authority_id != reviewer.authority_id:
        raise ValidationError({"report": ["not a report delivered to this reviewer's authority"]})
    if not reviewer.is_active:
        raise ValidationError({"reviewer": ["this reviewer account is deactivated"]})


def report_acknowledge(*, actor: Actor, reviewer: Reviewer, report: Report,
                       now: datetime | None = None) -> AcknowledgeResult:
    """Idempotent: the first acknowledgement stands; asking again returns it and records nothing."""
    report_in_reviewer_scope(reviewer=reviewer, report=report)
    with transaction.atomic():
        existing = Acknowledgement.objects.select_related("reviewer__user").filter(report=report).first()
        if existing is not None:
            return AcknowledgeResult(existing, False)
        try:
            # A savepoint: two reviewers clicking at once meet on the unique report column.
            with transaction.atomic():
                acknowledgement = Acknowledgement.objects.create(report=report, reviewer=reviewer,
                                                                 acknowledged_at=now or timezone.now())
        except IntegrityError:
            return AcknowledgeResult(Acknowledgement.objects.select_related("reviewer__user").get(report=report),
                                     False)
        audit_record(actor=actor, action="report_acknowledged", obj=acknowledgement,
                     changes={"report": str(report.public_id), "stage": f"{report.stage_name}#{report.sequence}",
                              "authority": reviewer.authority.name,
                              "reviewer": reviewer.user.get_username()})
    return AcknowledgeResult(acknowledgement, True)
