"""The reviewer access log: one row per portal read or download, with its audit event, in the request.

Machine reads (reviewer API, TAXII) are logged here too, with their channel and the token used.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.models import Report
from reporting.portal.models import AccessAction, AccessChannel, Reviewer, ReviewerAccess, ReviewerToken


def reviewer_access_record(
    *, reviewer: Reviewer, action: AccessAction, ip: str | None, report: Report | None = None, query: str = "",
    channel: AccessChannel = AccessChannel.PORTAL, token: ReviewerToken | None = None,
) -> ReviewerAccess:
    """Record what a reviewer saw. On a report it lands in that incident's audit trail too, so staff
    reading the incident see what the authority has looked at."""
    with transaction.atomic():
        access = ReviewerAccess.objects.create(reviewer=reviewer, report=report, action=action,
                                               at=timezone.now(), ip=ip, query=query[:500], channel=channel,
                                               token=token)
        changes = {"action": str(action), "ip": ip}
        if report is not None:
            changes["report"] = str(report.public_id)
            changes["stage"] = f"{report.stage_name}#{report.sequence}"
        elif query:
            changes["query"] = query[:500]
        if token is not None:
            changes["token"] = token.prefix
        audit_record(actor=Actor.for_user(reviewer.user), action=f"{channel}_{action}",
                     obj=report if report is not None else reviewer, changes=changes)
    return access


def reviewer_access_record_many(
    *, reviewer: Reviewer, action: AccessAction, ip: str | None, reports: Sequence[Report], query: str,
    channel: AccessChannel, token: ReviewerToken | None,
) -> list[ReviewerAccess]:
    """One access row per report a machine response carried (a TAXII page holds many), one audit event.

    The rows keep "what has the authority looked at" answerable per report; a single audit event per
    response keeps a page of a hundred objects from writing a hundred audit rows. A response that carried
    no report still leaves one row (with the query), so an empty pull is visible too.
    """
    now = timezone.now()
    query = query[:500]
    rows = [ReviewerAccess(reviewer=reviewer, report=report, action=action, at=now, ip=ip, query=query,
                           channel=channel, token=token) for report in reports]
    if not rows:
        rows = [ReviewerAccess(reviewer=reviewer, action=action, at=now, ip=ip, query=query, channel=channel,
                               token=token)]
    with transaction.atomic():
        created = ReviewerAccess.objects.bulk_create(rows)
        audit_record(actor=Actor.for_user(reviewer.user), action=f"{channel}_{action}", obj=reviewer,
                     changes={"action": str(action), "ip": ip, "query": query,
                              "token": token.prefix if token is not None else None,
                              "reports": [str(report.public_id) for report in reports]})
    return created
