"""Evidence, indicators and accounts of an incident: validated, normalised, deduplicated."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from incidents.actors import Actor
from incidents.choices import EnforcementAction, EvidenceKind
from incidents.hooks import IncidentChange, run_incident_hooks
from incidents.models import Account, Evidence, Incident, Indicator
from incidents.models.fast_insert import rows_insert
from incidents.services.audit import audit_record
from incidents.validation import is_sha256_hex, normalize_indicator


@dataclass(frozen=True)
class EvidenceInput:
    kind: str
    description: str
    content: str | None = None
    sha256: str | None = None

    def digest_and_size(self) -> tuple[str, int | None]:
        """The server computes the digest of content; a detector may instead give only a digest."""
        if self.content is None and not self.sha256:
            raise ValueError("give either content or sha256")
        if self.content is not None:
            raw = self.content.encode("utf-8")
            if len(raw) > settings.MIR_EVIDENCE_MAX_CONTENT_BYTES:
                raise ValueError(
                    f"content is {len(raw)} bytes; the cap is {settings.MIR_EVIDENCE_MAX_CONTENT_BYTES} bytes "
                    "(send the sha256 and keep the content in your own store)"
                )
            digest = hashlib.sha256(raw).hexdigest()
            if self.sha256 and self.sha256.lower() != digest:
                raise ValueError("sha256 does not match the SHA-256 of content")
            return digest, len(raw)
        assert self.sha256 is not None
        if not is_sha256_hex(self.sha256.lower()):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return self.sha256.lower(), None


def _part_changed(*, actor: Actor, action: str, obj: Incident | Evidence | Indicator | Account, changes: dict,
                  reason: str = "") -> None:
    """Audit a change to an incident's parts and tell the hooks (new evidence may be material)."""
    audit_record(actor=actor, action=action, obj=obj, changes=changes, reason=reason)
    incident = obj if isinstance(obj, Incident) else obj.incident
    run_incident_hooks(IncidentChange(kind="parts", incident=incident, actor=actor, changes={action: changes}))


def _field_errors(prefix: str, index: int, message: str, field: str = "") -> ValidationError:
    name = f"{prefix}[{index}]" + (f".{field}" if field else "")
    return ValidationError({name: [message]})


def parts_prepare(
    *,
    accounts: Iterable[Mapping] = (),
    indicators: Iterable[Mapping] = (),
    evidence: Iterable[EvidenceInput] = (),
) -> tuple[list[Account], list[Indicator], list[Evidence]]:
    """Validate and normalise parts before anything is written; unsaved rows, duplicates folded."""
    account_rows: dict[str, Account] = {}
    for i, item in enumerate(accounts):
        identifier = (item.get("id") or "").strip()
        action = item.get("enforcement_action") or EnforcementAction.NONE
        if not identifier:
            raise _field_errors("accounts", i, "must not be empty", "id")
        if len(identifier) > 256:
            raise _field_errors("accounts", i, "longer than 256 characters", "id")
        if action not in EnforcementAction.values:
            raise _field_errors("accounts", i, f"unknown enforcement action {action!r}", "enforcement_action")
        account_rows[identifier] = Account(identifier=identifier, enforcement_action=action)

    indicator_rows: dict[tuple[str, str], Indicator] = {}
    for i, item in enumerate(indicators):
        try:
            value = normalize_indicator(item.get("type", ""), item.get("value") or "")
        except ValueError as exc:
            raise _field_errors("indicators", i, str(exc), "value") from None
        indicator_rows[(item["type"], value)] = Indicator(type=item["type"], value=value)

    evidence_rows: dict[str, Evidence] = {}
    for i, ev in enumerate(evidence):
        if ev.kind not in EvidenceKind.values:
            raise _field_errors("evidence", i, f"unknown evidence kind {ev.kind!r}", "kind")
        if not ev.description or not ev.description.strip():
            raise _field_errors("evidence", i, "must not be empty", "description")
        try:
            digest, size = ev.digest_and_size()
        except ValueError as exc:
            raise _field_errors("evidence", i, str(exc)) from None
        evidence_rows.setdefault(
            digest,
            Evidence(
                kind=ev.kind, description=ev.description, sha256=digest, content=ev.content or "", size_bytes=size
            ),
        )
    return list(account_rows.values()), list(indicator_rows.values()), list(evidence_rows.values())


def parts_attach(
    *,
    incident: Incident,
    actor: Actor,
    accounts: list[Account],
    indicators: list[Indicator],
    evidence: list[Evidence],
) -> dict[str, int]:
    """Attach prepared parts that a filed incident does not have yet, with a "parts_added" event;
    returns how many of each were new. (A new incident's parts are written with it: ``incident_create``.)"""
    known_accounts = set(incident.accounts.values_list("identifier", flat=True)) if accounts else set()
    known_indicators = set(incident.indicators.values_list("type", "value")) if indicators else set()
    known_digests = set(incident.evidence.values_list("sha256", flat=True)) if evidence else set()
    new_accounts = [a for a in accounts if a.identifier not in known_accounts]
    new_indicators = [i for i in indicators if (i.type, i.value) not in known_indicators]
    new_evidence = [e for e in evidence if e.sha256 not in known_digests]
    counts = parts_link(incident=incident, accounts=new_accounts, indicators=new_indicators, evidence=new_evidence)
    rows_insert(new_accounts)
    rows_insert(new_indicators)
    rows_insert(new_evidence)
    if any(counts.values()):
        _part_changed(
            actor=actor,
            action="parts_added",
            obj=incident,
            changes={
                "accounts": len(new_accounts),
                "indicators": [f"{i.type}:{i.value}" for i in new_indicators],
                "evidence": [e.sha256 for e in new_evidence],
            },
        )
    return counts


def parts_link(
    *, incident: Incident, accounts: list[Account], indicators: list[Indicator], evidence: list[Evidence]
) -> dict[str, int]:
    """Point unsaved parts at their incident (saved or not yet); returns how many of each there are."""
    for row in (*accounts, *indicators, *evidence):
        row.incident = incident
    return {"accounts": len(accounts), "indicators": len(indicators), "evidence": len(evidence)}


# --- Staff edits of single parts (the admin). Each locks its row and writes one audit event. -------


def incident_parts_add(
    *,
    incident: Incident,
    actor: Actor,
    accounts: Iterable[Mapping] = (),
    indicators: Iterable[Mapping] = (),
    evidence: Iterable[EvidenceInput] = (),
) -> dict[str, int]:
    """Add parts to a filed incident; parts it already has are skipped. One "parts_added" event."""
    prepared = parts_prepare(accounts=accounts, indicators=indicators, evidence=evidence)
    with transaction.atomic():
        # Lock the incident so two staff adding the same indicator at once cannot both pass the
        # "already known" check and then collide on the unique constraint.
        row = Incident.objects.select_for_update().get(pk=incident.pk)
        return parts_attach(
            incident=row, actor=actor, accounts=prepared[0], indicators=prepared[1], evidence=prepared[2]
        )


def evidence_update(*, evidence: Evidence, actor: Actor, kind: str, description: str, reason: str = "") -> Evidence:
    """Change how a piece of evidence is described. Its digest and content are facts and stay as filed."""
    if kind not in EvidenceKind.values:
        raise ValidationError({"kind": [f"unknown evidence kind {kind!r}"]})
    description = (description or "").strip()
    if not description:
        raise ValidationError({"description": ["must not be empty"]})
    with transaction.atomic():
        row = Evidence.objects.select_for_update().get(pk=evidence.pk)
        changes = {
            name: [getattr(row, name), value]
            for name, value in (("kind", kind), ("description", description))
            if getattr(row, name) != value
        }
        if not changes:
            return row
        row.kind, row.description = kind, description
        row.save(update_fields=list(changes))
        _part_changed(actor=actor, action="evidence_updated", obj=row, changes=changes, reason=reason)
    return row


def evidence_remove(*, evidence: Evidence, actor: Actor, reason: str = "") -> None:
    """Remove a piece of evidence; the audit event keeps its digest (never its content)."""
    with transaction.atomic():
        row = Evidence.objects.select_for_update().get(pk=evidence.pk)
        _part_changed(
            actor=actor,
            action="evidence_removed",
            obj=row,
            changes={"kind": row.kind, "sha256": row.sha256, "size_bytes": row.size_bytes},
            reason=reason,
        )
        row.delete()


def indicator_update(
    *, indicator: Indicator, actor: Actor, indicator_type: str, value: str, reason: str = ""
) -> Indicator:
    """Correct an indicator; the new value is normalised per type like any filed one."""
    try:
        value = normalize_indicator(indicator_type, value or "")
    except ValueError as exc:
        raise ValidationError({"value": [str(exc)]}) from None
    with transaction.atomic():
        row = Indicator.objects.select_for_update().get(pk=indicator.pk)
        if (row.type, row.value) == (indicator_type, value):
            return row
        if Indicator.objects.filter(incident_id=row.incident_id, type=indicator_type, value=value).exists():
            raise ValidationError({"value": [f"the incident already has {indicator_type}:{value}"]})
        changes = {"indicator": [f"{row.type}:{row.value}", f"{indicator_type}:{value}"]}
        row.type, row.value = indicator_type, value
        row.save(update_fields=["type", "value"])
        _part_changed(actor=actor, action="indicator_updated", obj=row, changes=changes, reason=reason)
    return row


def indicator_remove(*, indicator: Indicator, actor: Actor, reason: str = "") -> None:
    with transaction.atomic():
        row = Indicator.objects.select_for_update().get(pk=indicator.pk)
        _part_changed(
            actor=actor, action="indicator_removed", obj=row, changes={"indicator": f"{row.type}:{row.value}"},
            reason=reason,
        )
        row.delete()


def account_update(
    *, account: Account, actor: Actor, identifier: str, enforcement_action: str, reason: str = ""
) -> Account:
    """Correct an account or record a new enforcement action against it."""
    identifier = (identifier or "").strip()
    if not identifier:
        raise ValidationError({"identifier": ["must not be empty"]})
    if len(identifier) > 256:
        raise ValidationError({"identifier": ["longer than 256 characters"]})
    if enforcement_action not in EnforcementAction.values:
        raise ValidationError({"enforcement_action": [f"unknown enforcement action {enforcement_action!r}"]})
    with transaction.atomic():
        row = Account.objects.select_for_update().get(pk=account.pk)
        changes: dict = {}
        if row.identifier != identifier:
            if Account.objects.filter(incident_id=row.incident_id, identifier=identifier).exists():
                raise ValidationError({"identifier": ["the incident already lists this account"]})
            # Like parts_attach, the trail notes that an identifier changed but never holds one.
            changes["identifier"] = "changed"
        if row.enforcement_action != enforcement_action:
            changes["enforcement_action"] = [row.enforcement_action, enforcement_action]
        if not changes:
            return row
        row.identifier, row.enforcement_action = identifier, enforcement_action
        row.save(update_fields=["identifier", "enforcement_action"])
        _part_changed(actor=actor, action="account_updated", obj=row, changes=changes, reason=reason)
    return row


def account_remove(*, account: Account, actor: Actor, reason: str = "") -> None:
    with transaction.atomic():
        row = Account.objects.select_for_update().get(pk=account.pk)
        _part_changed(
            actor=actor, action="account_removed", obj=row,
            changes={"enforcement_action": row.enforcement_action}, reason=reason,
        )
        row.delete()
