"""Filing an incident: by staff in the admin, by a detector through the API. One path for both."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import OPEN_STATUSES, ActorKind, DetectionSource, Severity
from incidents.hooks import IncidentChange, run_incident_hooks
from incidents.models import Incident
from incidents.models.fast_insert import rows_insert_family
from incidents.services.audit import audit_event_build, audit_record
from incidents.services.parts import EvidenceInput, parts_attach, parts_link, parts_prepare
from incidents.validation import normalize_countries, normalize_techniques

# Fields a filer may set. Status, determination, reportability and the grouping counters are the
# services' own; anything else in `fields` is a programming error caught here.
CREATE_FIELDS = frozenset(
    {
        "title", "summary", "category", "severity", "harm_types", "imminent_risk_to_life", "cross_border",
        "countries", "critical_infrastructure_sector", "near_miss", "occurred_start", "occurred_end",
        "occurred_precision", "detected_at", "aware_at", "detector_version", "score", "threshold",
        "external_source", "model_name", "model_version", "surface", "internal_use", "model_tools",
        "model_involvement", "safeguards_evaded", "actor_type", "actor_origin", "actor_confidence",
        "techniques", "event_chain", "affected_parties", "deaths", "injuries", "economic_loss_usd",
        "actions_taken", "actions_planned", "recommendation", "notified_parties", "root_cause", "unknowns",
        "tlp",
    }
)
# Severity order, most severe first: SEV-0 < SEV-1 < ... (string order matches).
_SEVERITY_ORDER = [s.value for s in Severity]


@dataclass(frozen=True)
class IntakeResult:
    incident: Incident
    grouped: bool


def normalise_incident_fields(fields: Mapping) -> dict:
    unknown = set(fields) - CREATE_FIELDS
    if unknown:
        raise ValidationError({name: ["this field cannot be set when filing"] for name in sorted(unknown)})
    values = dict(fields)
    try:
        if "countries" in values:
            values["countries"] = normalize_countries(values["countries"] or [])
    except ValueError as exc:
        raise ValidationError({"countries": [str(exc)]}) from None
    try:
        if "techniques" in values:
            values["techniques"] = normalize_techniques(values["techniques"] or [])
    except ValueError as exc:
        raise ValidationError({"techniques": [str(exc)]}) from None
    return values


def check_incident_consistency(incident: Incident) -> None:
    for name in ("score", "threshold"):
        value = getattr(incident, name)
        if value is not None and not 0 <= value <= 1:
            raise ValidationError({name: ["must be between 0 and 1"]})
    now = timezone.now()
    skew = timedelta(seconds=settings.MIR_CLOCK_SKEW_SECONDS)
    errors: dict[str, list[str]] = {}
    for name in ("detected_at", "aware_at", "occurred_start", "occurred_end"):
        value = getattr(incident, name)
        if value is not None and timezone.is_naive(value):
            errors[name] = ["must carry a UTC offset"]
        elif value is not None and value > now + skew:
            errors[name] = ["is in the future"]
    if errors:
        raise ValidationError(errors)
    if incident.occurred_start and incident.occurred_start > incident.detected_at + skew:
        errors["occurred_start"] = ["is after detected_at"]
    if incident.occurred_start and incident.occurred_end and incident.occurred_end < incident.occurred_start:
        errors["occurred_end"] = ["is before occurred_start"]
    if incident.aware_at and incident.aware_at + skew < incident.detected_at:
        errors["aware_at"] = ["is before detected_at"]
    if errors:
        raise ValidationError(errors)


def _lock_fingerprint(detector_id: int, fingerprint: str) -> None:
    """Serialise grouping decisions for one (detector, fingerprint) until the transaction ends.

    Without it two concurrent first occurrences would both find no open incident and both create
    one. On SQLite the write lock already serialises writers.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"{detector_id}:{fingerprint}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _find_group(*, detector_id: int, fingerprint: str, category: str, detected_at) -> Incident | None:  # noqa: ANN001
    window = timedelta(seconds=settings.MIR_GROUPING_WINDOW_SECONDS)
    return (
        Incident.objects.select_for_update()
        .filter(
            detector_id=detector_id,
            fingerprint=fingerprint,
            category=category,
            status__in=OPEN_STATUSES,
            last_seen_at__gte=detected_at - window,
        )
        .order_by("-last_seen_at")
        .first()
    )


def _add_occurrence(*, incident: Incident, actor: Actor, draft: Incident) -> None:
    """Fold a repeated detector event into its open incident: nothing in it is lost."""
    changes: dict = {"occurrence_count": [incident.occurrence_count, incident.occurrence_count + 1]}
    incident.occurrence_count += 1
    update = ["occurrence_count", "updated_at"]
    if draft.detected_at > incident.last_seen_at:
        incident.last_seen_at = draft.detected_at
        update.append("last_seen_at")
    # A more severe occurrence raises the incident's severity: a SEV-0 must never hide in a SEV-3.
    if _SEVERITY_ORDER.index(draft.severity) < _SEVERITY_ORDER.index(incident.severity):
        changes["severity"] = [incident.severity, draft.severity]
        incident.severity = draft.severity
        update.append("severity")
    if draft.imminent_risk_to_life and not incident.imminent_risk_to_life:
        changes["imminent_risk_to_life"] = [False, True]
        incident.imminent_risk_to_life = True
        update.append("imminent_risk_to_life")
    for name in ("techniques", "countries"):
        merged = list(dict.fromkeys([*getattr(incident, name), *getattr(draft, name)]))
        if merged != getattr(incident, name):
            changes[name] = [getattr(incident, name), merged]
            setattr(incident, name, merged)
            update.append(name)
    incident.save(update_fields=update)
    audit_record(actor=actor, action="occurrence_added", obj=incident, changes=changes)
    run_incident_hooks(IncidentChange(kind="occurrence", incident=incident, actor=actor, changes=changes))


def incident_create(
    *,
    actor: Actor,
    fields: Mapping,
    fingerprint: str = "",
    accounts: Iterable[Mapping] = (),
    indicators: Iterable[Mapping] = (),
    evidence: Iterable[EvidenceInput] = (),
    savepoint: bool = True,
) -> IntakeResult:
    """File an incident, or add an occurrence to the detector's open incident with the same fingerprint.

    Validates everything before writing; writes the incident, its parts, the audit event and (through
    the hooks) its obligations in one transaction. Raises ValidationError naming the failing fields.

    Inside a caller's transaction the writes get a savepoint, so a caller that catches the error (the admin
    shows it on the form) can go on using its transaction. ``savepoint=False`` is for callers whose
    transaction ends with any error anyway (the API views): it saves two round trips per incident.
    """
    values = normalise_incident_fields(fields)
    draft = Incident(**values)
    if actor.kind == ActorKind.DETECTOR:
        draft.detection_source = DetectionSource.DETECTOR
        draft.detector = actor.detector
        draft.fingerprint = fingerprint
    elif fingerprint:
        raise ValidationError({"fingerprint": ["only detectors group by fingerprint"]})
    elif actor.kind == ActorKind.USER:
        draft.detection_source = DetectionSource.EXTERNAL_TIP if draft.external_source else DetectionSource.STAFF
        draft.filed_by = actor.user
    else:
        draft.detection_source = DetectionSource.EXTERNAL_TIP if draft.external_source else DetectionSource.STAFF
    if draft.detected_at is None:
        raise ValidationError({"detected_at": ["this field is required"]})
    draft.last_seen_at = draft.detected_at
    # Field checks only: unique and check constraints are left to the database, where they hold
    # anyway, instead of costing a query each here.
    draft.clean_fields(exclude=["last_seen_at", "detector", "filed_by"])
    check_incident_consistency(draft)
    prepared = parts_prepare(accounts=accounts, indicators=indicators, evidence=evidence)

    with transaction.atomic(savepoint=savepoint):
        if fingerprint:
            _lock_fingerprint(actor.detector.pk, fingerprint)
            existing = _find_group(
                detector_id=actor.detector.pk, fingerprint=fingerprint, category=draft.category,
                detected_at=draft.detected_at,
            )
            if existing is not None:
                _add_occurrence(incident=existing, actor=actor, draft=draft)
                parts_attach(
                    incident=existing, actor=actor, accounts=prepared[0], indicators=prepared[1],
                    evidence=prepared[2],
                )
                return IntakeResult(incident=existing, grouped=True)
        # The incident, its parts and its "created" event: one statement on PostgreSQL.
        counts = parts_link(incident=draft, accounts=prepared[0], indicators=prepared[1], evidence=prepared[2])
        event = audit_event_build(
            actor=actor,
            action="created",
            obj=draft,
            changes={"category": draft.category, "severity": draft.severity, "parts": counts},
        )
        rows_insert_family(draft, [*prepared, [event]])
        run_incident_hooks(IncidentChange(kind="created", incident=draft, actor=actor))
    return IntakeResult(incident=draft, grouped=False)
