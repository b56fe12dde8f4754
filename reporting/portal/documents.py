"""What the portal makes of a frozen payload: readable sections, the signature check, the STIX bundle.

Everything here reads the bytes that were sent (Report.payload) and the published signing keys; nothing
reads the live incident.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from reporting.models import Report, SigningKey
from reporting.packaging.stix import bundle_for, validate_bundle
from reporting.signing import SignatureInvalid, verify_envelope

SECTION_TITLES = {
    "identity": "Identity", "clocks": "Clocks", "classification": "Classification", "ai_system": "AI system",
    "actor": "Actor", "activity": "Activity", "impact": "Impact", "response": "Response",
    "handling": "Handling", "deadline": "Deadline",
}


@dataclass(frozen=True)
class SignatureCheck:
    state: str  # "valid", "invalid" or "unknown_key"
    key_id: str
    message: str
    digest_matches: bool


def payload_bytes(report: Report) -> bytes:
    return report.payload.encode("utf-8")


def document_of(report: Report) -> dict:
    try:
        envelope = json.loads(report.payload)
    except ValueError:
        return {}
    document = envelope.get("document") if isinstance(envelope, dict) else None
    return document if isinstance(document, dict) else {}


def signature_check(report: Report) -> SignatureCheck:
    """Verify the payload as a receiver would, against this service's published keys."""
    payload = payload_bytes(report)
    digest_matches = hashlib.sha256(payload).hexdigest() == report.payload_sha256
    try:
        key_id = str(json.loads(payload)["signature"]["key_id"])
    except (ValueError, KeyError, TypeError):
        key_id = ""
    if key_id and not SigningKey.objects.filter(key_id=key_id).exists():
        return SignatureCheck("unknown_key", key_id, f"Signed with key {key_id}, which is not among the published "
                              "keys: the signature cannot be checked.", digest_matches)
    try:
        verify_envelope(payload)
    except SignatureInvalid as exc:
        return SignatureCheck("invalid", key_id, f"The signature does not verify: {exc}.", digest_matches)
    return SignatureCheck("valid", key_id, f"Valid Ed25519 signature by published key {key_id}.", digest_matches)


def stix_bundle_bytes(report: Report) -> bytes:
    """The STIX 2.1 bundle of the frozen document.

    Built from the document only, with the report's message id, the destination's TLP floor and the
    payload attached, which is what the TAXII transport sends and what the TAXII feed serves: the mapping
    is deterministic, so the download, the feed and a TAXII destination's collection hold the same objects.
    Raises ValueError when the document cannot be mapped.
    """
    payload = payload_bytes(report)
    bundle = bundle_for(json.loads(payload), message_id=str(report.public_id), tlp_floor=report.destination.tlp,
                        payload=payload)
    validate_bundle(bundle)
    return json.dumps(bundle, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _scalar(value: object) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _rows(value: object, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a section to (label, text) rows; nested keys read as "Occurred › start"."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            label = f"{prefix} › {key.replace('_', ' ')}" if prefix else _label(key)
            rows.extend(_rows(item, label))
        return rows or [(prefix, "—")]
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return [(prefix, ", ".join(_scalar(item) for item in value) or "—")]
        rows = []
        for index, item in enumerate(value, start=1):
            rows.extend(_rows(item, f"{prefix} {index}"))
        return rows or [(prefix, "—")]
    return [(prefix, _scalar(value))]


def document_sections(document: dict) -> list[dict]:
    """The document as titled sections of rows, in its own order; unknown sections are shown too."""
    sections = []
    for key, value in document.items():
        if isinstance(value, dict):
            sections.append({"id": f"section-{key}", "title": SECTION_TITLES.get(key, _label(key)),
                             "rows": _rows(value)})
    header = [(_label(key), _scalar(value)) for key, value in document.items() if not isinstance(value, dict)]
    if header:
        sections.insert(0, {"id": "section-document", "title": "Document", "rows": header})
    return sections
