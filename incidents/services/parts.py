"""Evidence, indicators and accounts of an incident: validated, normalised, deduplicated."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

from incidents.actors import Actor
from incidents.choices import EnforcementAction, EvidenceKind
from incidents.models import Account, Evidence, Incident, Indicator
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
            Evidence(kind=ev.kind, description=ev.description, sha256=digest, content=ev.content or "", size_bytes=size),
        )
    return list(account_rows.values()), list(indicator_rows.values()), list(evidence_rows.values())


def parts_attach(
    *,
    incident: Incident,
    actor: Actor,
    accounts: list[Account],
    indicators: list[Indicator],
    evidence: list[Evidence],
    is_new: bool = False,
) -> dict[str, int]:
    """Attach prepared parts that the incident does not have yet; returns how many of each were new.

    For a new incident the caller's "created" audit event covers the parts; otherwise this writes
    a "parts_added" event.
    """
    known_accounts = set(incident.accounts.values_list("identifier", flat=True)) if accounts and not is_new else set()
    known_indicators = set(incident.indicators.values_list("type", "value")) if indicators and not is_new else set()
    known_digests = set(incident.evidence.values_list("sha256", flat=True)) if evidence and not is_new else set()
    new_accounts = [a for a in accounts if a.identifier not in known_accounts]
    new_indicators = [i for i in indicators if (i.type, i.value) not in known_indicators]
    new_evidence = [e for e in evidence if e.sha256 not in known_digests]
    for row in (*new_accounts, *new_indicators, *new_evidence):
        row.incident = incident
    Account.objects.bulk_create(new_accounts)
    Indicator.objects.bulk_create(new_indicators)
    Evidence.objects.bulk_create(new_evidence)
    counts = {"accounts": len(new_accounts), "indicators": len(new_indicators), "evidence": len(new_evidence)}
    if not is_new and any(counts.values()):
        audit_record(
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
