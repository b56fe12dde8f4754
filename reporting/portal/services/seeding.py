"""Seed many delivered reports for one authority, for benchmarks and demos (never production).

One real incident is filed through ``incident_create`` and one of its reports frozen with the real
``freeze``: that gives a document of the current shape. Each seeded row gets its own copy of that document
with its own identity (incident and report ids, reference, title), category and severity, signed with the
current key, so detail pages, downloads and signature checks behave as for a real delivery. Rows are
written with bulk inserts, one transaction per batch, so an interrupted run keeps what it finished.
"""
from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Category, Severity
from incidents.models import Incident
from incidents.services.audit import audit_record
from incidents.services.intake import incident_create
from reporting.choices import ReportStatus
from reporting.models import Destination, Report
from reporting.packaging.canonical import canonical_bytes, payload_sha256
from reporting.portal.models import Authority
from reporting.signing import ALG, CANONICALIZATION, _private_key, b64url, freeze, signing_key_current

# Child-safety reports only go to child-protection destinations (packaging refuses them elsewhere).
CATEGORIES = [c.value for c in Category if c != Category.CHILD_SAFETY]
SEVERITIES = [s.value for s in Severity]
_SUBJECTS = ("Credential phishing kit", "Intrusion tooling", "Voice-clone extortion", "Covert persona network",
             "Weights exfiltration attempt", "Jailbreak marketplace", "Stalkerware build", "Invoice fraud scripts",
             "Synthetic news site", "Ransomware negotiation bot")
_QUALIFIERS = ("targeting a regional bank", "against hospital staff", "in three languages", "at scale",
               "sold on a forum", "aimed at election officials", "through a reseller API", "by a known actor")
SPREAD = timedelta(days=365)


class SeedRefused(ValueError):
    """The arguments cannot be honoured; nothing was written."""


@dataclass(frozen=True)
class SeedResult:
    authority: str
    destination: str
    created: int
    total_delivered: int


def delivered_reports_seed(
    *, actor: Actor, authority_name: str, count: int, batch: int = 5000,
    progress: Callable[[int, int], None] | None = None, seed: int = 0,
) -> SeedResult:
    if count < 1:
        raise SeedRefused("count must be at least 1")
    if not 1 <= batch <= 50_000:
        raise SeedRefused("batch must be between 1 and 50000")
    authority = Authority.objects.filter(name=authority_name).first()
    if authority is None:
        raise SeedRefused(f"no authority named {authority_name!r}")
    destination = Destination.objects.filter(authority=authority).order_by("pk").first()
    if destination is None:
        raise SeedRefused(f"authority {authority_name!r} has no destination to deliver to")
    template = _template(actor=actor, destination=destination)
    document, _, _, _ = freeze(template)
    key = signing_key_current(actor=actor)
    private = _private_key(key.key_id, key.private_key_encrypted)
    rng, now, made = random.Random(seed), timezone.now(), 0
    skip = {"id", "public_id", "created_at", "updated_at"}
    incident_values = {f.attname: getattr(template.incident, f.attname) for f in Incident._meta.concrete_fields
                       if f.attname not in skip and not f.unique}
    report_values = {f.attname: getattr(template, f.attname) for f in Report._meta.concrete_fields
                     if f.attname not in skip | {"incident_id"} and not f.unique}
    document = json.loads(document)["document"]
    while made < count:
        n = min(batch, count - made)
        with transaction.atomic():
            _insert_batch(n, rng=rng, now=now, document=document, key_id=key.key_id, private=private,
                          incident_values=incident_values, report_values=report_values)
        made += n
        if progress:
            progress(made, count)
    with transaction.atomic():
        audit_record(actor=actor, action="reports_seeded", obj=destination,
                     changes={"authority": authority.name, "count": count, "batch": batch})
    total = Report.objects.filter(status=ReportStatus.DELIVERED, destination__authority=authority).count()
    return SeedResult(authority.name, destination.name, made, total)


def _template(*, actor: Actor, destination: Destination) -> Report:
    incident = incident_create(actor=actor, fields={
        "title": "Seed template", "summary": "Filed to shape the seeded delivered reports.", "category": "CYBER",
        "severity": "SEV-1", "detected_at": timezone.now(), "model_name": "Mythos 5"}).incident
    report = Report.objects.filter(incident=incident, destination=destination).order_by("pk").first()
    if report is None:
        raise SeedRefused(f"destination {destination.name!r} owes no report for a SEV-1 CYBER incident")
    return report


def _insert_batch(n: int, *, rng: random.Random, now, document: dict, key_id: str, private,  # noqa: ANN001
                  incident_values: dict, report_values: dict) -> None:
    rows = []
    for _ in range(n):
        delivered_at = now - SPREAD * rng.random()
        rows.append({
            "incident_public_id": uuid.uuid4(), "report_public_id": uuid.uuid4(),
            "title": f"{rng.choice(_SUBJECTS)} {rng.choice(_QUALIFIERS)} #{rng.randrange(10**6):06d}",
            "category": rng.choice(CATEGORIES), "severity": rng.choice(SEVERITIES),
            "delivered_at": delivered_at, "detected_at": delivered_at - timedelta(minutes=rng.randrange(5, 2880)),
        })
    incidents = Incident.objects.bulk_create([
        Incident(**{**incident_values, "public_id": row["incident_public_id"], "title": row["title"],
                    "category": row["category"], "severity": row["severity"], "detected_at": row["detected_at"]})
        for row in rows
    ])
    reports = []
    for row, incident in zip(rows, incidents, strict=True):
        doc = copy.deepcopy(document)
        doc["identity"].update({"incident_id": str(incident.public_id), "incident_reference": incident.reference,
                                "report_id": str(row["report_public_id"]), "title": row["title"]})
        doc.setdefault("classification", {}).update({"category": row["category"], "severity": row["severity"]})
        signed = canonical_bytes(doc)
        signature = b64url(private.sign(signed))
        payload = canonical_bytes({"document": doc, "signature": {
            "alg": ALG, "key_id": key_id, "value": signature, "canonicalization": CANONICALIZATION,
            "document_sha256": payload_sha256(signed)}})
        reports.append(Report(**{
            **report_values, "incident_id": incident.pk, "public_id": row["report_public_id"],
            "status": ReportStatus.DELIVERED, "payload": payload.decode("utf-8"),
            "payload_sha256": payload_sha256(payload), "signature": signature, "signing_key_id": key_id,
            "frozen_at": row["delivered_at"], "delivered_at": row["delivered_at"], "next_attempt_at": None,
            "lease_expires_at": None, "sent_reference": incident.reference, "sent_title": row["title"],
            "sent_category": row["category"], "sent_severity": row["severity"], "receipt": {"status": "accepted"},
        }))
    Report.objects.bulk_create(reports)
