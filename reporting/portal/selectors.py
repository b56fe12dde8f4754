"""Every read the reviewers' portal makes, scoped to the reviewer's authority.

The scope is one rule: a report is visible to a reviewer when it is DELIVERED and its destination
belongs to the reviewer's authority. Anything else does not exist for them (the views answer 404).
Reviewers read the frozen document (Report.payload and the sent_* columns copied from it), never the
live incident; the incident id is used only to find the other stages of the same incident.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import F, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from reporting.choices import ReportStatus
from reporting.models import DeliveryAttempt, Destination, Report
from reporting.portal.models import Reviewer

# Only what the list shows: the frozen payload can be large and is left out of list queries.
LIST_FIELDS = ("id", "public_id", "incident_id", "destination_id", "destination__name", "stage_name", "stage_kind",
               "sequence", "status", "delivered_at", "due_at", "late", "sent_reference", "sent_title",
               "sent_category", "sent_severity", "payload_sha256")


@dataclass(frozen=True)
class ReportFilters:
    delivered_from: date | None = None
    delivered_to: date | None = None
    category: str = ""
    severity: str = ""
    stage_kind: str = ""
    q: str = ""
    acknowledged: bool | None = None  # None: either


def reviewer_for_user(user) -> Reviewer | None:  # noqa: ANN001  (any user object, anonymous included)
    """The user's active reviewer profile, or None (staff, inactive, anonymous, or no profile)."""
    if user is None or not user.is_authenticated or user.is_staff or user.is_superuser:
        return None
    return Reviewer.objects.select_related("authority", "user").filter(user=user, is_active=True).first()


def reviewer_reports(*, reviewer: Reviewer) -> QuerySet[Report]:
    """The scope itself. Every other read in this module starts here.

    The authority's destinations are read first (a handful of ids) so the report query filters on
    Report.destination_id alone and can walk the delivered-report indexes in order; a join on the
    destination made PostgreSQL sort every delivered row of the authority for each page.
    """
    destination_ids = list(Destination.objects.filter(authority_id=reviewer.authority_id).values_list("id", flat=True))
    return Report.objects.filter(status=ReportStatus.DELIVERED, destination_id__in=destination_ids)


def reviewer_report_list(*, reviewer: Reviewer, filters: ReportFilters) -> QuerySet[Report]:
    qs = reviewer_reports(reviewer=reviewer).select_related("destination").only(*LIST_FIELDS)
    if filters.delivered_from:
        qs = qs.filter(delivered_at__gte=_start_of(filters.delivered_from))
    if filters.delivered_to:
        qs = qs.filter(delivered_at__lt=_start_of(filters.delivered_to + timedelta(days=1)))
    if filters.category:
        qs = qs.filter(sent_category=filters.category)
    if filters.severity:
        qs = qs.filter(sent_severity=filters.severity)
    if filters.stage_kind:
        qs = qs.filter(stage_kind=filters.stage_kind)
    if filters.q:
        qs = qs.filter(Q(sent_reference__iexact=filters.q) | Q(sent_title__icontains=filters.q))
    if filters.acknowledged is not None:
        qs = qs.filter(acknowledgement__isnull=not filters.acknowledged)
    # The acknowledgement is one row per report (reporting.portal.models_qa): a join, not a query per row.
    qs = qs.annotate(acknowledged_at=F("acknowledgement__acknowledged_at"))
    return qs.order_by("-delivered_at", "-id")


def reviewer_report_detail(*, reviewer: Reviewer, public_id) -> Report:  # noqa: ANN001
    """One report with its attempts, or Http404 when it is outside the reviewer's scope."""
    qs = reviewer_reports(reviewer=reviewer).select_related(
        "destination", "destination__authority", "proof"
    ).prefetch_related(
        Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("number"))
    )
    return get_object_or_404(qs, public_id=public_id)


def reviewer_report_download(*, reviewer: Reviewer, public_id) -> Report:  # noqa: ANN001
    qs = reviewer_reports(reviewer=reviewer).select_related("destination")
    return get_object_or_404(qs, public_id=public_id)


def reviewer_other_stages(*, reviewer: Reviewer, report: Report) -> QuerySet[Report]:
    """The incident's other stages delivered to the same authority, in the order they were delivered."""
    return (
        reviewer_reports(reviewer=reviewer)
        .filter(incident_id=report.incident_id)
        .exclude(pk=report.pk)
        .select_related("destination")
        .only(*LIST_FIELDS)
        .order_by("delivered_at", "id")
    )


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# The machine feed (reporting/portal/taxii): the same scope, read in delivery order.

FEED_FIELDS = ("id", "public_id", "delivered_at", "payload_sha256", "destination_id", "destination__tlp")


def reviewer_feed_reports(*, reviewer: Reviewer) -> QuerySet[Report]:
    """The authority's delivered reports, oldest delivery first, without their payloads (see the next one)."""
    return (reviewer_reports(reviewer=reviewer).select_related("destination").only(*FEED_FIELDS)
            .order_by("delivered_at", "id"))


def reviewer_feed_payloads(*, reviewer: Reviewer, report_ids: list[int]) -> dict[int, str]:
    """Frozen payloads of some of those reports by id, still through the scope."""
    rows = reviewer_reports(reviewer=reviewer).filter(pk__in=report_ids).values_list("id", "payload")
    return dict(rows)
