"""Filing validated detector input: the part of the intake views shared by DRF and the fast path."""
from __future__ import annotations

from django.db import transaction

from incidents.actors import Actor
from incidents.models import Detector, IdempotencyKey
from incidents.services.idempotency import idempotency_complete, idempotency_release
from incidents.services.intake import IntakeResult, incident_create
from incidents.services.parts import EvidenceInput

_DIRECT_FIELDS = (
    "title", "summary", "category", "severity", "detected_at", "score", "threshold", "detector_version",
    "occurred_start", "occurred_end", "surface", "imminent_risk_to_life", "countries", "techniques",
)


def submit(detector: Detector, data: dict) -> IntakeResult:
    fields = {name: data[name] for name in _DIRECT_FIELDS if name in data}
    fields["model_name"] = data["model"]["name"]
    fields["model_version"] = data["model"].get("version", "")
    return incident_create(
        actor=Actor.for_detector(detector),
        fields=fields,
        fingerprint=data.get("fingerprint", ""),
        accounts=data.get("accounts", []),
        indicators=data.get("indicators", []),
        evidence=[EvidenceInput(**item) for item in data.get("evidence", [])],
        # Both callers run this in a transaction of their own that any error ends (rolled back whole).
        savepoint=False,
    )


def accepted_body(result: IntakeResult) -> tuple[int, dict]:
    # The shape of IncidentAccepted (which documents it), built directly: it is on every request.
    incident = result.incident
    body = {
        "id": str(incident.public_id), "reference": incident.reference, "status": str(incident.status),
        "grouped": result.grouped, "occurrence_count": incident.occurrence_count,
        "url": f"/api/v1/incidents/{incident.public_id}",
    }
    return (200 if result.grouped else 201), body


def incident_accept(*, detector: Detector, record: IdempotencyKey, validated: dict) -> tuple[int, dict]:
    """File one incident under a claimed key: the work and the key's completion commit together; on
    any error the claim is released (nothing was stored) and the error goes on to the caller."""
    try:
        with transaction.atomic():
            code, body = accepted_body(submit(detector, validated))
            idempotency_complete(record=record, status=code, body=body)
    except BaseException:
        idempotency_release(record=record)
        raise
    return code, body
