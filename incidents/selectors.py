"""Reads of the intake side, each scoped to its audience."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet

from incidents.choices import Status
from incidents.models import AuditChainHead, AuditEvent, Detector, Incident
from incidents.models.fast_rows import rows_where


def incident_triage_queue_count() -> int:
    """Incidents waiting for a person to look at them (shown to staff on the admin index)."""
    return Incident.objects.filter(status=Status.NEW).count()


def incidents_for_detector(*, detector: Detector) -> QuerySet[Incident]:
    """A detector sees only the incidents it filed."""
    return Incident.objects.filter(detector=detector)


def incident_get_for_detector(*, detector: Detector, public_id: str) -> Incident | None:
    try:
        parsed = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return incidents_for_detector(detector=detector).filter(public_id=parsed).first()


def incident_audit_trail(*, incident: Incident) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(incident=incident).select_related("actor_user", "actor_detector")


def audit_chain_head() -> AuditChainHead | None:
    """The sealed chain's last position, as published (reports, /.well-known/mir-audit-head.json); None
    until something has been sealed. Public by design: a (seq, hash) pair says nothing about the events."""
    # In every report document: prebuilt (incidents.models.fast_rows), no query compiled per call.
    found = rows_where(AuditChainHead, "id = %s", [AuditChainHead.SINGLETON])
    head = found[0] if found else None
    return head if head is not None and head.seq > 0 else None
