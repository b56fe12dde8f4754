from __future__ import annotations

from typing import NotRequired, TypedDict, Unpack

from django.db import models, transaction

from incidents.actors import Actor
from incidents.choices import ActorKind
from incidents.models import AuditEvent, Incident
from incidents.models.fast_insert import rows_insert


class AuditEventFields(TypedDict):
    """What an audit event says: who (``actor``) did what (``action``) to which row (``obj``)."""

    actor: Actor
    action: str
    obj: models.Model
    changes: NotRequired[dict | None]
    reason: NotRequired[str]


def audit_record(**fields: Unpack[AuditEventFields]) -> AuditEvent:
    """Append one audit event. Must run inside the caller's transaction (same commit as the change)."""
    event = audit_event_build(**fields)
    rows_insert([event])
    return event


def audit_event_build(**fields: Unpack[AuditEventFields]) -> AuditEvent:
    """The unsaved event ``audit_record`` writes, for a caller that writes it in its own statement
    (``incident_create``: with the new incident, ``rows_insert_family``). Same transaction rule."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must be called inside the service's transaction")
    actor, obj = fields["actor"], fields["obj"]
    return AuditEvent(
        incident=obj if isinstance(obj, Incident) else getattr(obj, "incident", None),
        object_type=obj._meta.label_lower,
        object_id=str(getattr(obj, "public_id", None) or obj.pk),
        action=fields["action"],
        actor_kind=actor.kind,
        actor_user=actor.user if actor.kind == ActorKind.USER else None,
        actor_detector=actor.detector if actor.kind == ActorKind.DETECTOR else None,
        actor_label=actor.label[:150],
        changes=fields.get("changes") or {},
        reason=fields.get("reason", ""),
    )
