"""Staff decisions on an incident: triage, confirm, dismiss, resolve, close, re-triage, reportability.

Each function locks the row, validates, saves only the fields it changes, writes its audit event and
runs the incident hooks, all in one transaction.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Determination, Reportability, Status
from incidents.hooks import IncidentChange, run_incident_hooks
from incidents.models import Incident
from incidents.services.audit import audit_record
from incidents.services.intake import CREATE_FIELDS, check_incident_consistency, normalise_incident_fields
from incidents.transitions import check_transition

# What staff may edit after filing (re-triage). Detection provenance stays as filed.
UPDATE_FIELDS = CREATE_FIELDS - {"detector_version", "score", "threshold", "detected_at"}


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def incident_transition(
    *, incident: Incident, actor: Actor, to: str, reason: str = "", at: datetime | None = None
) -> Incident:
    """Apply one move of the status table, with the timestamps and determination it implies."""
    now = at or timezone.now()
    with transaction.atomic():
        row = _locked(incident)
        check_transition(row.status, to)
        changes: dict = {"status": [row.status, to]}
        update = ["status", "updated_at"]
        if to == Status.CONFIRMED:
            if row.determination != Determination.CONFIRMED:
                changes["determination"] = [row.determination, Determination.CONFIRMED]
                row.determination = Determination.CONFIRMED
                update.append("determination")
            if row.determined_at is None:
                row.determined_at = now
                update.append("determined_at")
        elif to == Status.DISMISSED:
            if not reason.strip():
                raise ValidationError({"reason": ["a dismissal needs a reason"]})
            changes["determination"] = [row.determination, Determination.FALSE_POSITIVE]
            row.determination = Determination.FALSE_POSITIVE
            row.dismissal_reason = reason
            update += ["determination", "dismissal_reason"]
        elif to == Status.RESOLVED:
            row.resolved_at = now
            update.append("resolved_at")
        elif to == Status.CLOSED:
            row.closed_at = now
            update.append("closed_at")
        elif to == Status.TRIAGED and row.status == Status.DISMISSED:
            # Reopened: the earlier dismissal no longer stands.
            row.determination = Determination.SUSPECTED
            row.dismissal_reason = ""
            update += ["determination", "dismissal_reason"]
        row.status = to
        row.save(update_fields=update)
        audit_record(actor=actor, action=f"status_{to}", obj=row, changes=changes, reason=reason)
        run_incident_hooks(IncidentChange(kind="transitioned", incident=row, actor=actor, changes=changes))
    return row


def incident_update(*, incident: Incident, actor: Actor, fields: Mapping, reason: str = "") -> Incident:
    """Re-triage: change classification and details. Recorded field by field in the audit trail."""
    forbidden = set(fields) - UPDATE_FIELDS
    if forbidden:
        raise ValidationError({name: ["cannot be changed after filing"] for name in sorted(forbidden)})
    values = normalise_incident_fields(fields)
    with transaction.atomic():
        row = _locked(incident)
        changes = {
            name: [_json_value(getattr(row, name)), _json_value(value)]
            for name, value in values.items()
            if getattr(row, name) != value
        }
        if not changes:
            return row
        for name in changes:
            setattr(row, name, values[name])
        row.clean_fields(exclude=["last_seen_at", "detector", "filed_by"])
        check_incident_consistency(row)
        row.save(update_fields=[*changes, "updated_at"])
        audit_record(actor=actor, action="updated", obj=row, changes=changes, reason=reason)
        run_incident_hooks(IncidentChange(kind="updated", incident=row, actor=actor, changes=changes))
    return row


def incident_decide_reportability(*, incident: Incident, actor: Actor, reportable: bool, reason: str) -> Incident:
    """Record the decision to report, or not to report, with who, when and why."""
    if not reason.strip():
        raise ValidationError({"reason": ["a reportability decision needs a reason"]})
    if actor.user is None:
        raise ValidationError({"actor": ["a reportability decision is made by a person"]})
    decision = Reportability.REPORTABLE if reportable else Reportability.NOT_REPORTABLE
    with transaction.atomic():
        row = _locked(incident)
        changes = {"reportability": [row.reportability, decision]}
        row.reportability = decision
        row.reportability_reason = reason
        row.reportability_decided_by = actor.user
        row.reportability_decided_at = timezone.now()
        row.save(
            update_fields=[
                "reportability", "reportability_reason", "reportability_decided_by", "reportability_decided_at",
                "updated_at",
            ]
        )
        audit_record(actor=actor, action="reportability_decided", obj=row, changes=changes, reason=reason)
        run_incident_hooks(IncidentChange(kind="reportability", incident=row, actor=actor, changes=changes))
    return row
