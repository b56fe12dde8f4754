"""What the sandbox knows of the signed report envelope: the one place to change when the format moves.

The format is docs/report-format.md (v1): the body is the RFC 8785 canonical JSON of

    {"document": {...}, "signature": {"alg": "Ed25519", "key_id": "<16 hex>", "value": "<base64url>",
                                      "canonicalization": "RFC8785", "document_sha256": "<hex>"}}

where ``value`` is the Ed25519 signature over ``rfc8785(document)``. Beyond the signature, the sandbox
also applies the format's "optional stricter checks" (canonical payload, key id derived from the key)
and checks that the document names the delivery it came in: it exists to catch the sender's mistakes.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALG = "Ed25519"
CANONICALIZATION = "RFC8785"
# Shown in the ledger so a person can tell reports apart without opening them: name -> path in the document.
SUMMARY_PATHS = {
    "schema": ("schema",),
    "report_id": ("identity", "report_id"),
    "incident_id": ("identity", "incident_id"),
    "incident_reference": ("identity", "incident_reference"),
    "stage": ("identity", "stage"),
    "stage_kind": ("identity", "stage_kind"),
    "sequence": ("identity", "sequence"),
    "version": ("identity", "version"),
    "title": ("identity", "title"),
    "category": ("classification", "category"),
    "severity": ("classification", "severity"),
    "tlp": ("handling", "tlp"),
    "authority": ("handling", "recipient", "authority"),
    "due_at": ("deadline", "due_at"),
    "late": ("deadline", "late"),
}
SUMMARY_TEXT_CHARS = 200


def b64url_decode(text: object) -> bytes:
    """base64url with or without padding; raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def key_id_for(public_key: bytes) -> str:
    """The format derives a key id from its key, so a verifier can tell a key from a look-alike."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify_document(body: bytes, keys: Mapping[str, bytes], *, webhook_id: str | None = None) -> tuple[bool, str]:
    """Check the signed document in a delivered body. ``keys`` maps key_id to a raw Ed25519 public key.

    Returns (True, key_id) or (False, reason). A ``keys`` mapping may fetch unknown key ids on lookup;
    if it cannot reach its source it raises, which the caller answers with 503: the sender must retry,
    not give up, when the receiver merely cannot check.
    """
    try:
        envelope = json.loads(body)
    except ValueError:
        return False, "body is not JSON"
    if not isinstance(envelope, dict) or set(envelope) != {"document", "signature"}:
        return False, "body is not an envelope: exactly 'document' and 'signature' expected"
    document, signature = envelope["document"], envelope["signature"]
    if not isinstance(document, dict) or not isinstance(signature, dict):
        return False, "'document' and 'signature' must be objects"
    if signature.get("alg") != ALG or signature.get("canonicalization") != CANONICALIZATION:
        return False, f"unsupported signature: alg {signature.get('alg')!r}, " \
                      f"canonicalization {signature.get('canonicalization')!r}"
    try:
        signed = rfc8785.dumps(document)
        canonical = rfc8785.dumps(envelope) == body
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        return False, f"document cannot be canonicalised (RFC 8785): {exc}"
    if not canonical:
        return False, "payload is not RFC 8785 canonical JSON"

    key_id = signature.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        return False, "signature has no key_id"
    public_key = keys.get(key_id)
    if public_key is None:
        return False, f"unknown key_id {key_id!r} (not among the published keys)"
    if key_id_for(public_key) != key_id:
        return False, f"key_id {key_id!r} is not derived from its published key"
    try:
        raw_signature = b64url_decode(signature.get("value"))
    except ValueError:
        return False, "signature value is not base64url"
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw_signature, signed)
    except InvalidSignature:
        return False, f"signature does not match the document (key_id {key_id!r})"
    except ValueError:
        return False, f"published key {key_id!r} is not a raw Ed25519 public key"
    # Checked after the signature: once it verifies, a mismatch here is the sender's bug, not tampering.
    if signature.get("document_sha256") != hashlib.sha256(signed).hexdigest():
        return False, "signature.document_sha256 is not the SHA-256 of the signed document"
    report_id = _at(document, ("identity", "report_id"))
    if webhook_id is not None and report_id is not None and report_id != webhook_id:
        return False, f"identity.report_id {report_id!r} is not the webhook-id {webhook_id!r}"
    return True, key_id


def document_summary(body: bytes) -> dict:
    """A few identifying fields of the document, best effort: never raises on odd input."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return {}
    document = envelope.get("document") if isinstance(envelope, dict) else None
    if not isinstance(document, dict):
        return {}
    summary: dict = {}
    for name, path in SUMMARY_PATHS.items():
        value = _at(document, path)
        if isinstance(value, bool | int | float | str):
            summary[name] = value[:SUMMARY_TEXT_CHARS] if isinstance(value, str) else value
    return summary


def _at(document: dict, path: tuple[str, ...]) -> object:
    value: object = document
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
