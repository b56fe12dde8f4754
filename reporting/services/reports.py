"""Status changes of a Report (one table, one function), and the decisions people make on them."""
from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.models.fast_rows import row_update
from incidents.services.audit import audit_record
from reporting.choices import DISCLOSURE_ORDER, Disclosure, ReportStatus
from reporting.dispatch import enqueue_on_commit
from reporting.models import Report
from reporting.services.delivery_rows import incident_lock_for_report

ALLOWED_REPORT_TRANSITIONS: dict[str, frozenset[str]] = {
    ReportStatus.AWAITING_APPROVAL: frozenset({ReportStatus.PENDING, ReportStatus.WITHDRAWN}),
    ReportStatus.PENDING: frozenset({ReportStatus.DELIVERED, ReportStatus.FAILED, ReportStatus.WITHDRAWN}),
    ReportStatus.FAILED: frozenset({ReportStatus.PENDING, ReportStatus.WITHDRAWN, ReportStatus.DELIVERED}),
    ReportStatus.DELIVERED: frozenset(),
    ReportStatus.WITHDRAWN: frozenset(),
}


class ReportTransitionError(Exception):
    pass


def report_set_status(
    *, report: Report, actor: Actor, to: str, fields: dict | None = None, reason: str = "", action: str = "",
    audit_changes: dict | None = None,
) -> Report:
    """Apply one move of the table with the fields it implies; lock, save, audit. Caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("report_set_status runs inside the caller's transaction")
    current = str(report.status)
    if str(to) not in ALLOWED_REPORT_TRANSITIONS[current]:
        raise ReportTransitionError(f"cannot move a report from '{current}' to '{to}'")
    changes: dict = {"status": [current, str(to)]}
    report.status = to
    for name, value in (fields or {}).items():
        setattr(report, name, value)
    row_update(report, ["status", *(fields or {}), "updated_at"])
    audit_record(
        actor=actor, action=action or f"report_{to}", obj=report.incident or report,
        changes={"report": str(report.public_id), "stage": f"{report.stage_name}#{report.sequence}",
                 "destination": report.destination.name, **changes, **(audit_changes or {})},
        reason=reason,
    )
    return report


def _locked(report: Report) -> Report:
    incident_lock_for_report(report.pk)
    return (Report.objects.select_for_update(of=("self", "destination"))
            .select_related("destination", "incident").get(pk=report.pk))


def report_approve(*, report: Report, actor: Actor, disclosure: str = Disclosure.DIGESTS, reason: str = "") -> Report:
    """A person lets an approval-gated stage go out, choosing how much it may disclose."""
    if actor.user is None:
        raise ValidationError({"actor": ["a report is approved by a person"]})
    if disclosure not in Disclosure.values:
        raise ValidationError({"disclosure": [f"choose from {', '.join(Disclosure.values)}"]})
    with transaction.atomic():
        row = _locked(report)
        if DISCLOSURE_ORDER.index(disclosure) > DISCLOSURE_ORDER.index(row.destination.max_disclosure):
            raise ValidationError({"disclosure": [f"{row.destination.name} may receive at most "
                                                  f"{row.destination.max_disclosure}"]})
        if row.frozen_at is not None and disclosure != row.disclosure:
            raise ValidationError({"disclosure": ["the document is already frozen; its disclosure cannot change"]})
        now = timezone.now()
        fields = {"approved_by": actor.user, "approved_at": now, "disclosure": disclosure}
        if row.clock_started_at is not None:
            # A digest's clock starts when its period ends: approved early, it still waits for the period.
            fields["next_attempt_at"] = max(now, row.clock_started_at)
        report_set_status(report=row, actor=actor, to=ReportStatus.PENDING, fields=fields, reason=reason,
                          action="report_approved")
        if row.clock_started_at is not None and row.next_attempt_at <= now:
            enqueue_on_commit(row.pk)
    return row


def report_withdraw(*, report: Report, actor: Actor, reason: str) -> Report:
    """Only a person, with a reason, ends a stage without delivering it."""
    if actor.user is None:
        raise ValidationError({"actor": ["only a person can withdraw a report"]})
    if not reason.strip():
        raise ValidationError({"reason": ["a withdrawal needs a reason"]})
    with transaction.atomic():
        row = _locked(report)
        return report_set_status(
            report=row, actor=actor, to=ReportStatus.WITHDRAWN, reason=reason,
            fields={"withdrawn_by": actor.user, "withdrawn_at": timezone.now(), "withdrawn_reason": reason,
                    "next_attempt_at": None, "lease_expires_at": None, "lease_token": None},
        )


def report_send_now(*, report: Report, actor: Actor, late_reason: str = "", at: datetime | None = None) -> Report:
    """Staff push a stage out now: approve-and-send is report_approve; this retries a failed or waiting one."""
    now = at or timezone.now()
    with transaction.atomic():
        row = _locked(report)
        if row.status == ReportStatus.AWAITING_APPROVAL:
            raise ValidationError({"status": ["approve this report first (that also sends it)"]})
        fields = {"next_attempt_at": now, "lease_expires_at": None, "lease_token": None}
        if late_reason.strip() and row.frozen_at is None:
            # Only an unfrozen document can still carry it; otherwise it stays in the audit trail.
            fields["late_reason"] = late_reason
        if row.status == ReportStatus.FAILED:
            report_set_status(report=row, actor=actor, to=ReportStatus.PENDING, fields=fields, reason=late_reason,
                              action="report_resent")
        elif row.status == ReportStatus.PENDING:
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=[*fields, "updated_at"])
            audit_record(actor=actor, action="report_send_now", obj=row.incident or row,
                         changes={"report": str(row.public_id)}, reason=late_reason)
        else:
            raise ValidationError({"status": [f"a {row.status} report is not sent again"]})
        enqueue_on_commit(row.pk)
    return row


def report_set_late_reason(*, report: Report, actor: Actor, reason: str) -> Report:
    """The reason a late report gives the authority (it is frozen into the document at first send)."""
    with transaction.atomic():
        row = _locked(report)
        if row.frozen_at is not None:
            raise ValidationError({"late_reason": ["the document is already frozen"]})
        row.late_reason = reason
        row.save(update_fields=["late_reason", "updated_at"])
        audit_record(actor=actor, action="report_late_reason", obj=row.incident or row,
                     changes={"report": str(row.public_id)}, reason=reason)
    return row
