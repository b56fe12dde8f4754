"""The report document (``urn:mir:report:v1``): what one stage tells one authority about one incident.

Built once per report, at freeze time, from the incident as it then stands; docs/report-format.md
describes every field and docs/report-schema.v1.json is its schema. What never appears here, for any
destination: internal integer ids (the human incident reference aside), staff usernames, account
identifiers in clear. Evidence content appears only under the ``raw_content`` disclosure.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.utils import timezone

from incidents.choices import ActorType, Category, DetectionSource, Tlp
from incidents.models import Incident
from incidents.models.fast_rows import db_value
from incidents.selectors import audit_chain_head
from reporting.choices import ANSWER_STAGE_NAME, Disclosure
from reporting.models import Destination, Report
from reporting.packaging.pseudonyms import Redactor, pseudonymize

SCHEMA_ID = "urn:mir:report:v1"

# Least to most restrictive (TLP 2.0): a document carries the stricter of incident and destination.
_TLP_ORDER = [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED]
# JSON numbers beyond this cannot be carried exactly (RFC 8785 refuses them); counts are clamped to null.
_MAX_SAFE_INTEGER = 2**53 - 1
# Free text on its way out: None when empty, account identifiers replaced by pseudonyms.
Text = Callable[[str | None], str | None]


class PackagingRefused(Exception):
    """This document must not be built for this destination. Retrying cannot help: a person must act."""


class ChildSafetyRefused(PackagingRefused):
    pass


def build_document(*, report: Report, now: datetime | None = None) -> dict:
    """The document for ``report``. ``now`` stamps ``generated_at`` and judges lateness; freeze passes none."""
    if report.is_digest:
        from reporting.packaging.digest import build_digest_document  # it builds on this module's helpers

        return build_digest_document(report=report, now=now)
    incident: Incident = report.incident
    destination: Destination = report.destination
    if incident.category == Category.CHILD_SAFETY and not destination.accepts_child_safety:
        # The rules never open such a report; this guards against a hand-made row or a rule bug, since
        # sending child-safety material anywhere but a child-protection body is itself a harm.
        raise ChildSafetyRefused(
            f"report {report.public_id}: a CHILD_SAFETY incident goes only to a child-protection destination, "
            f"and {destination.name!r} does not accept child-safety reports"
        )
    now = now or timezone.now()
    key = destination.get_pseudonym_key()
    accounts = list(incident.accounts.all())
    pseudonyms = {account.identifier: pseudonymize(account.identifier, key) for account in accounts}
    redact = Redactor(pseudonyms)

    def text(value: str | None) -> str | None:
        return redact(value) if value and value.strip() else None

    document = {
        "schema": SCHEMA_ID,
        "generated_at": _time(now),
        "identity": _identity(report, text),
        "clocks": _clocks(incident),
        "classification": _classification(report, text),
        "ai_system": {
            "model_name": incident.model_name,
            "model_version": text(incident.model_version),
            "surface": incident.surface or None,
            "internal_use": incident.internal_use,
            "tools": _strings(incident.model_tools, text),
            "involvement": text(incident.model_involvement),
            "safeguards_evaded": text(incident.safeguards_evaded),
        },
        "actor": {
            "type": incident.actor_type,
            "origin": text(incident.actor_origin),
            "confidence": incident.actor_confidence or None,
            "account_count": len(accounts),
            # Sorted by pseudonym, not by filing order: the same order at two authorities would let
            # them pair up their (different) pseudonyms by position.
            "accounts": sorted(
                ({"pseudonym": pseudonyms[a.identifier], "enforcement_action": a.enforcement_action} for a in accounts),
                key=lambda item: item["pseudonym"],
            ),
        },
        "activity": {
            "event_chain": text(incident.event_chain),
            "techniques": [str(t) for t in incident.techniques or []],
            "indicators": _indicators(incident, redact),
            "occurrences": incident.occurrence_count,
            "last_seen_at": _time(incident.last_seen_at),
        },
        "impact": _impact(incident, text),
        "response": {
            "actions_taken": text(incident.actions_taken),
            "actions_planned": text(incident.actions_planned),
            "recommendation": text(incident.recommendation),
            "notified_parties": _strings(incident.notified_parties, text),
            "root_cause": text(incident.root_cause),
            "unknowns": {"fields": still_unknown(incident), "notes": text(incident.unknowns)},
        },
        "handling": _handling(report, text),
        "deadline": {
            "clock_start": report.stage.clock_start if report.stage_id else None,
            "clock_started_at": _time(report.clock_started_at),
            "due_at": _time(report.due_at),
            # Judged when the document is built (first send); the Report row records the actual arrival.
            "late": bool(report.late or (report.due_at is not None and now > report.due_at)),
            "late_reason": text(report.late_reason),
        },
        "audit_chain_head": audit_checkpoint(),
    }
    reply = _reply(report, text)
    if reply is not None:
        document["reply"] = reply
    return document


def audit_checkpoint() -> dict | None:
    """The lab's sealed audit-chain head when the document is built: a checkpoint the authority now holds
    and the lab cannot rewrite (audit_verify --checkpoint SEQ:HASH proves the chain still contains it)."""
    head = audit_chain_head()
    if head is None:
        return None
    return {"seq": head.seq, "hash": head.hash, "sealed_at": _time(head.sealed_at)}


def _reply(report: Report, text: Text) -> dict | None:
    """For an answer stage: the authority's question, the lab's answer, and the report asked about.

    Only answer stages (opened by reporting.portal.services.questions, never by a rule) can carry one, so
    other stages skip the lookup.
    """
    if report.stage_id is not None or report.stage_name != ANSWER_STAGE_NAME:
        return None
    try:
        question = report.answered_question
    except ObjectDoesNotExist:
        return None
    return {
        "question_id": str(question.public_id),
        "in_reply_to": str(question.report.public_id),
        "question": text(question.text) or "",
        "asked_at": _time(question.asked_at),
        "wished_by": question.wished_by.isoformat(),
        "answer": text(question.answer) or "",
        "answered_at": _time(question.answered_at),
    }


def still_unknown(incident: Incident) -> list[str]:
    """Document paths an initial (or later) report cannot fill yet, so the authority knows what to expect."""
    gaps = {
        "clocks.occurred.start": incident.occurred_start is None,
        "clocks.occurred.end": incident.occurred_end is None,
        "clocks.aware_at": incident.aware_at is None,
        "clocks.determined_at": incident.determined_at is None,
        "actor.type": incident.actor_type == ActorType.UNKNOWN,
        "actor.origin": not incident.actor_origin.strip(),
        "ai_system.model_version": not incident.model_version.strip(),
        "impact": not incident.affected_parties and incident.deaths is None and incident.injuries is None
        and incident.economic_loss_usd is None,
        "response.root_cause": not incident.root_cause.strip(),
    }
    return [path for path, missing in gaps.items() if missing]


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _identity(report: Report, text: Text) -> dict:
    incident = report.incident
    return {
        "incident_id": str(incident.public_id),
        "incident_reference": incident.reference,
        "report_id": str(report.public_id),
        "stage": report.stage_name,
        "stage_kind": report.stage_kind,
        "sequence": report.sequence,
        "version": _version(report),
        "supersedes": str(report.supersedes.public_id) if report.supersedes_id else None,
        "title": text(incident.title) or "",
        "summary": text(incident.summary) or "",
        "reporting_entity": {
            "name": getattr(settings, "MIR_REPORTING_ENTITY_NAME", "") or "Unnamed reporting entity",
            "contact": getattr(settings, "MIR_REPORTING_CONTACT", "") or "",
        },
    }


def _version(report: Report) -> int:
    """1, 2, ...: this report's place among everything sent or owed to this destination about this incident.

    Derived from rows that are never deleted (PROTECT), so rebuilding the same report gives the same number.
    """
    # Report.objects.filter(Q(created_at__lt=...) | Q(created_at=..., pk__lte=...), incident_id=...,
    # destination_id=...).count(), prebuilt: it runs on every freeze.
    created = db_value(Report, "created_at", report.created_at)
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL, [report.incident_id, report.destination_id, created, created, report.pk])
        return cursor.fetchone()[0]


_VERSION_SQL = (
    f"SELECT COUNT(*) FROM {Report._meta.db_table} WHERE incident_id = %s AND destination_id = %s "  # noqa: S608
    "AND (created_at < %s OR (created_at = %s AND id <= %s))"
)


def _clocks(incident: Incident) -> dict:
    detector = None
    if incident.detection_source == DetectionSource.DETECTOR and incident.detector_id:
        detector = {"name": incident.detector.name, "version": incident.detector_version or None}
    return {
        "occurred": {
            "start": _time(incident.occurred_start),
            "end": _time(incident.occurred_end),
            "precision": incident.occurred_precision,
        },
        "detected_at": _time(incident.detected_at),
        "aware_at": _time(incident.aware_at),
        "determined_at": _time(incident.determined_at),
        "resolved_at": _time(incident.resolved_at),
        # Staff are "staff", never a username; an external tipster is not named (it may be a person).
        "detection": {
            "source": incident.detection_source,
            "detector": detector,
            "score": incident.score,
            "threshold": incident.threshold,
        },
    }


def _classification(report: Report, text: Text) -> dict:
    incident = report.incident
    return {
        "category": incident.category,
        "severity": incident.severity,
        "determination": incident.determination,
        "harm_types": _strings(incident.harm_types, text),
        "imminent_risk_to_life": incident.imminent_risk_to_life,
        "cross_border": incident.cross_border,
        "countries": [str(c) for c in incident.countries or []],
        "critical_infrastructure_sector": text(incident.critical_infrastructure_sector),
        "near_miss": incident.near_miss,
        # Why this authority receives it: the rule that owes the stage.
        "qualification": {
            "rule_id": str(report.rule.public_id),
            "rule": report.rule.name,
            "basis": text(report.rule.description),
        },
    }


def _indicators(incident: Incident, redact: Redactor) -> list[dict]:
    items = []
    for indicator in incident.indicators.all():
        # An e-mail or profile URL can be an account identifier itself: it then leaves as its pseudonym.
        value = redact(indicator.value)
        items.append({"type": indicator.type, "value": value, "pseudonymized": value != indicator.value})
    return sorted(items, key=lambda item: (item["type"], item["value"]))


def _impact(incident: Incident, text: Text) -> dict:
    parties = []
    for party in incident.affected_parties or []:
        # The column is open JSON; only categories and counts may leave (victims are never identified).
        if isinstance(party, dict):
            parties.append({"category": text(str(party.get("category", ""))) or "unspecified",
                            "count": _count(party.get("count"))})
        else:
            parties.append({"category": text(str(party)) or "unspecified", "count": None})
    loss = incident.economic_loss_usd
    return {
        "affected_parties": parties,
        "deaths": incident.deaths,
        "injuries": incident.injuries,
        # A decimal string: a JSON number would round cents through a binary float.
        "economic_loss_usd": f"{loss:.2f}" if loss is not None else None,
    }


def _handling(report: Report, text: Text) -> dict:
    incident, destination = report.incident, report.destination
    raw = discloses_raw_content(report)
    evidence = []
    for item in incident.evidence.all():
        entry = {
            "id": str(item.public_id),
            "kind": item.kind,
            "description": text(item.description) or "",
            "sha256": item.sha256,
            "size_bytes": item.size_bytes,
        }
        if raw:
            # Exactly as filed (never redacted), so it still matches its SHA-256; null if only a digest was filed.
            entry["content"] = item.content or None
        evidence.append(entry)
    return {
        "tlp": _stricter_tlp(incident.tlp, destination.tlp),
        "disclosure": Disclosure.RAW_CONTENT if raw else Disclosure.DIGESTS,
        "recipient": {"destination_id": str(destination.public_id), "authority": destination.authority.name},
        "evidence": evidence,
    }


def discloses_raw_content(report: Report) -> bool:
    """Raw evidence leaves only when the report asks for it, the destination may receive it, and a person
    approved it (report_approve records all three at once). Anything less degrades to digests: sending
    less than intended is recoverable, sending too much is not."""
    return (
        report.disclosure == Disclosure.RAW_CONTENT
        and report.destination.max_disclosure == Disclosure.RAW_CONTENT
        and report.approved_by_id is not None
    )


def _stricter_tlp(*markings: str) -> str:
    # An unknown marking counts as TLP:RED: never loosen handling because of a typo in a row.
    return _TLP_ORDER[max(_TLP_ORDER.index(m) if m in _TLP_ORDER else len(_TLP_ORDER) - 1 for m in markings)]


def _strings(values: list | None, text: Text) -> list[str]:
    return [s for s in (text(str(v)) for v in values or []) if s]


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= _MAX_SAFE_INTEGER else None
