"""Filing validated detector input: the part of the intake views shared by DRF and the fast path."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from incidents.actors import Actor
from incidents.models import Detector
from incidents.services.idempotency import (
    Claim,
    ClaimResult,
    idempotency_claim,
    idempotency_complete,
    idempotency_retrying,
)
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


@dataclass(frozen=True)
class Filing:
    """What became of a request: filed or grouped (``status`` and ``body`` set), or a claim that was
    not ours to act on (replay, mismatch, in flight), which the caller answers."""
    claim: Claim
    status: int | None = None
    body: dict | None = None


def incident_accept(*, detector: Detector, key: str, fingerprint: str, validated: dict) -> Filing:
    """File one incident under an Idempotency-Key: claim, work and the stored answer in one transaction
    (incidents/services/idempotency.py). On any error it rolls back whole (nothing stored, the key free)
    and the error goes on to the caller."""
    return idempotency_retrying(
        lambda: _accept_once(detector=detector, key=key, fingerprint=fingerprint, validated=validated)
    )


def _accept_once(*, detector: Detector, key: str, fingerprint: str, validated: dict) -> Filing:
    with transaction.atomic():
        claim = idempotency_claim(detector=detector, key=key, fingerprint=fingerprint)
        if claim.result is not ClaimResult.CLAIMED:
            return Filing(claim)
        code, body = accepted_body(submit(detector, validated))
        idempotency_complete(claim=claim, status=code, body=body)
        return Filing(claim, code, body)
