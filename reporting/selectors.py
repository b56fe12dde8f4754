"""Reads of the outbound side for staff: the clock board and the counts on the admin index.

"Open" is OPEN_REPORT_STATUSES (awaiting approval, pending, failed): a stage stays open until it is
delivered or a person withdraws it. "Overdue" is an open stage whose deadline has passed.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Case, F, IntegerField, Prefetch, QuerySet, Value, When
from django.utils import timezone

from reporting.choices import OPEN_REPORT_STATUSES
from reporting.models import Escalation, Receipt, Report

if TYPE_CHECKING:
    from reporting.portal.models import Authority

# Board order: open stages first, then the soonest deadline; stages whose clock has not started last.
BOARD_ORDERING = ("open_rank", F("due_at").asc(nulls_last=True), "id")
# Escalations: unacknowledged first, newest first within each group.
ESCALATION_ORDERING = (F("acknowledged_at").asc(nulls_first=True), "-created_at", "-id")


def reports_board() -> QuerySet[Report]:
    """Every report with what a board row shows, in board order (a fixed number of queries for any page)."""
    return (
        Report.objects.select_related("incident", "destination")
        .prefetch_related(Prefetch("escalations", queryset=Escalation.objects.only("id", "report_id", "level")))
        .annotate(open_rank=Case(When(status__in=OPEN_REPORT_STATUSES, then=Value(0)), default=Value(1),
                                 output_field=IntegerField()))
        .order_by(*BOARD_ORDERING)
    )


def reports_open_board() -> QuerySet[Report]:
    return reports_board().filter(status__in=OPEN_REPORT_STATUSES)


def reports_overdue(*, now: datetime | None = None) -> QuerySet[Report]:
    return Report.objects.filter(status__in=OPEN_REPORT_STATUSES, due_at__lt=now or timezone.now())


def reports_overdue_count(*, now: datetime | None = None) -> int:
    return reports_overdue(now=now).count()


def reports_due_within(hours: float, *, now: datetime | None = None) -> QuerySet[Report]:
    """Open stages not yet overdue whose deadline falls within the next ``hours``."""
    now = now or timezone.now()
    return Report.objects.filter(
        status__in=OPEN_REPORT_STATUSES, due_at__gte=now, due_at__lt=now + timedelta(hours=hours)
    )


def escalations_unacknowledged_count() -> int:
    return Escalation.objects.filter(acknowledged_at__isnull=True).count()


def escalations_board() -> QuerySet[Escalation]:
    return (
        Escalation.objects.select_related("report__incident", "report__destination", "acknowledged_by")
        .order_by(*ESCALATION_ORDERING)
    )


def receipts_for_authority(*, authority: Authority) -> QuerySet[Receipt]:
    """Receipts of the reports owed to ``authority``: the scope a reviewer of that authority may read.

    Scoped by the report's own destination (the authority it was owed to), also when it went out through
    an e-mail fallback. Only delivered reports have receipts, so nothing undelivered can appear.
    """
    return (
        Receipt.objects.filter(report__destination__authority_id=authority.pk)
        .select_related("report", "report__destination", "attempt", "destination")
        .order_by("-delivered_at", "-id")
    )


def receipt_for_report(*, authority: Authority, report_public_id: uuid.UUID | str) -> Receipt:
    """One report's receipt within the authority's scope; Receipt.DoesNotExist (a 404) outside it."""
    return receipts_for_authority(authority=authority).get(report__public_id=report_public_id)


def receipt_of(report: Report) -> Receipt | None:
    """Staff: a report's receipt, if it was delivered."""
    return Receipt.objects.select_related("destination", "attempt").filter(report=report).first()
