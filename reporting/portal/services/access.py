"""The reviewer access log: one row per portal read or download, with its audit event, in the request."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.models import Report
from reporting.portal.models import AccessAction, Reviewer, ReviewerAccess


def reviewer_access_record(
    *, reviewer: Reviewer, action: AccessAction, ip: str | None, report: Report | None = None, query: str = ""
) -> ReviewerAccess:
    """Record what a reviewer saw. On a report it lands in that incident's audit trail too, so staff
    reading the incident see what the authority has looked at."""
    with transaction.atomic():
        access = ReviewerAccess.objects.create(reviewer=reviewer, report=report, action=action,
                                               at=timezone.now(), ip=ip, query=query[:500])
        changes = {"action": str(action), "ip": ip}
        if report is not None:
            changes["report"] = str(report.public_id)
            changes["stage"] = f"{report.stage_name}#{report.sequence}"
        elif query:
            changes["query"] = query[:500]
        audit_record(actor=Actor.for_user(reviewer.user), action=f"portal_{action}",
                     obj=report if report is not None else reviewer, changes=changes)
    return access
