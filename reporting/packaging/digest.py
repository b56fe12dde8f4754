"""The digest document (``urn:mir:digest:v1``): one period's qualifying incidents for one authority.

Built once, at freeze, like every report document (reporting.signing.freeze signs it the same way).
docs/report-format.md ("Digests") describes it and docs/digest-schema.v1.json is its schema. Two
contents: ``list`` names each incident with what a weekly summary needs, accounts only as this
destination's pseudonyms and evidence only as digests; ``aggregate`` carries statistics and nothing
per incident. Raw evidence never appears in a digest, whatever the destination may receive.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from incidents.choices import Category, Reportability
from incidents.models import Incident
from reporting.choices import DigestContent, Disclosure
from reporting.models import DigestEntry, Report
from reporting.packaging.document import _stricter_tlp, _time, audit_checkpoint
from reporting.packaging.pseudonyms import Redactor, pseudonymize
from reporting.periods import Period

DIGEST_SCHEMA_ID = "urn:mir:digest:v1"


def digest_incidents(report: Report) -> list[Incident]:
    """The incidents this digest carries, in a stable order (their public ids).

    Left out: an incident a person decided not to report, and a CHILD_SAFETY incident unless the
    destination is a child-protection one (not even counted: the category itself must not leak).
    """
    entries = (
        DigestEntry.objects.filter(digest=report)
        .select_related("incident")
        .prefetch_related("incident__accounts", "incident__evidence", "incident__indicators")
    )
    accepts_child_safety = report.destination.accepts_child_safety
    kept = [
        e.incident for e in entries
        if e.incident.reportability != Reportability.NOT_REPORTABLE
        and (e.incident.category != Category.CHILD_SAFETY or accepts_child_safety)
    ]
    return sorted(kept, key=lambda incident: str(incident.public_id))


def build_digest_document(*, report: Report, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    destination = report.destination
    incidents = digest_incidents(report)
    content = report.stage.digest_content if report.stage_id else DigestContent.AGGREGATE
    period = Period(report.stage.digest_period if report.stage_id else "", report.period_start, report.period_end)
    document = {
        "schema": DIGEST_SCHEMA_ID,
        "generated_at": _time(now),
        "identity": {
            "report_id": str(report.public_id),
            "stage": report.stage_name,
            "stage_kind": report.stage_kind,
            "sequence": report.sequence,
            "title": f"{'Weekly digest' if period.kind == 'weekly' else 'Monthly aggregate'} {period.label}"
            if period.kind else f"Digest {report.period_start:%Y-%m-%d}",
            "reporting_entity": {
                "name": getattr(settings, "MIR_REPORTING_ENTITY_NAME", "") or "Unnamed reporting entity",
                "contact": getattr(settings, "MIR_REPORTING_CONTACT", "") or "",
            },
        },
        "period": {"kind": period.kind or None, "label": period.label if period.kind else None,
                   "start": _time(report.period_start), "end": _time(report.period_end)},
        "qualification": {"rule_id": str(report.rule.public_id), "rule": report.rule.name,
                          "basis": report.rule.description.strip() or None},
        "content": content,
        # An empty digest is still sent when its row exists (every incident in it was later left out):
        # the authority then reads an explicit "nothing to report" rather than silence.
        "nothing_to_report": not incidents,
        "statistics": _statistics(incidents),
        "handling": {
            "tlp": _stricter_tlp(destination.tlp, *(i.tlp for i in incidents)),
            "disclosure": Disclosure.DIGESTS,
            "recipient": {"destination_id": str(destination.public_id), "authority": destination.authority.name},
        },
        "deadline": {
            "clock_start": "period_end",
            "clock_started_at": _time(report.clock_started_at),
            "due_at": _time(report.due_at),
            "late": bool(report.late or (report.due_at is not None and now > report.due_at)),
            "late_reason": report.late_reason.strip() or None,
        },
        # Digests are reports too: each one hands the authority a checkpoint of the audit chain.
        "audit_chain_head": audit_checkpoint(),
    }
    if content == DigestContent.LIST:
        key = destination.get_pseudonym_key()
        document["incidents"] = [_listed(incident, key) for incident in incidents]
    return document


def _listed(incident: Incident, key: bytes) -> dict:
    accounts = list(incident.accounts.all())
    pseudonyms = {a.identifier: pseudonymize(a.identifier, key) for a in accounts}
    redact = Redactor(pseudonyms)
    evidence = list(incident.evidence.all())
    return {
        "incident_id": str(incident.public_id),
        "incident_reference": incident.reference,
        "title": redact(incident.title) if incident.title.strip() else "",
        "summary": redact(incident.summary) if incident.summary.strip() else "",
        "category": incident.category,
        "severity": incident.severity,
        "determination": incident.determination,
        "detected_at": _time(incident.detected_at),
        "counts": {"occurrences": incident.occurrence_count, "accounts": len(accounts),
                   "indicators": len(incident.indicators.all()), "evidence": len(evidence)},
        "techniques": sorted(str(t) for t in incident.techniques or []),
        "accounts": sorted(
            ({"pseudonym": pseudonyms[a.identifier], "enforcement_action": a.enforcement_action} for a in accounts),
            key=lambda item: item["pseudonym"],
        ),
        "evidence": sorted(
            ({"id": str(e.public_id), "kind": e.kind, "sha256": e.sha256, "size_bytes": e.size_bytes,
              "description": redact(e.description) if e.description.strip() else ""} for e in evidence),
            key=lambda item: item["id"],
        ),
    }


def _counts(values: Iterable[object]) -> dict[str, int]:
    return dict(sorted(Counter(str(v) if v not in (None, "") else "unspecified" for v in values).items()))


def _statistics(incidents: list[Incident]) -> dict:
    return {
        "incidents": len(incidents),
        "occurrences": sum(i.occurrence_count for i in incidents),
        "accounts": sum(len(i.accounts.all()) for i in incidents),
        "near_misses": sum(1 for i in incidents if i.near_miss),
        "by_category": _counts(i.category for i in incidents),
        "by_severity": _counts(i.severity for i in incidents),
        "by_determination": _counts(i.determination for i in incidents),
        "by_surface": _counts(i.surface for i in incidents),
        "by_detection_source": _counts(i.detection_source for i in incidents),
        "by_actor_type": _counts(i.actor_type for i in incidents),
        "by_technique": _counts(t for i in incidents for t in i.techniques or []),
    }
