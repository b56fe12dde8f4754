"""Ed25519 document signatures: the service's keys, signing, verification, and the frozen envelope.

What is sent (docs/report-format.md, "Signature"): the RFC 8785 canonical JSON of

    {"document": {...}, "signature": {"alg": "Ed25519", "key_id": ..., "value": ...,
                                      "canonicalization": "RFC8785", "document_sha256": ...}}

where ``value`` is the base64url Ed25519 signature over ``canonical_bytes(document)``. Anyone holding
the published public keys (/.well-known/mir-signing-keys.json) and an RFC 8785 implementation can check
it: parse the payload, canonicalise ``document`` again, verify. Nothing outside ``document`` is signed;
``key_id`` only picks the key, and a forged one cannot make a signature verify.

Keys: one current key signs; rotation retires it (it stays published, so every report it signed stays
verifiable) and creates a new one. Private keys are stored encrypted (reporting.encryption).
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.db import connection, transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.models.fast_rows import rows_where
from incidents.services.audit import audit_record
from reporting.encryption import decrypt, encrypt
from reporting.models import Report, SigningKey
from reporting.packaging.canonical import canonical_bytes, payload_sha256
from reporting.packaging.document import build_document

ALG = "Ed25519"
CANONICALIZATION = "RFC8785"
# Serialises creation and rotation of keys across processes (PostgreSQL advisory lock id; any fixed number).
_KEYS_LOCK = 0x6D69725F6B657973  # "mir_keys"


class SignatureInvalid(ValueError):
    """The payload is not a well-formed envelope, names an unknown key, or its signature does not verify."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id_for(public_key_raw: bytes) -> str:
    """Stable and derivable by anyone from the published key: the first 16 hex of SHA-256(raw key)."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


# --- keys -----------------------------------------------------------------------------------------

def _current() -> SigningKey | None:
    # On every freeze: prebuilt (incidents.models.fast_rows), the same row as
    # SigningKey.objects.filter(retired_at__isnull=True).order_by("-created_at", "-id").first().
    found = rows_where(SigningKey, "retired_at IS NULL", order_by="created_at DESC, id DESC", limit=1)
    return found[0] if found else None


def _lock_keys() -> None:
    """Hold the key lock until the transaction ends.

    Without it, two workers freezing their first reports at once would both find no key and both
    create one. On SQLite the database write lock already serialises writers; should two keys ever be
    current, the newest signs and both are published, so every signature still verifies.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_KEYS_LOCK])


def _create(actor: Actor, action: str, retired: list[str]) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = SigningKey.objects.create(
        key_id=key_id_for(raw_public), public_key=b64url(raw_public), private_key_encrypted=encrypt(b64url(raw_private))
    )
    audit_record(actor=actor, action=action, obj=key, changes={"key_id": key.key_id, "retired": retired})
    return key


def signing_key_current(*, actor: Actor | None = None) -> SigningKey:
    """The key that signs now; the first one is created on demand (race-safe, see _lock_keys)."""
    key = _current()
    if key is not None:
        return key
    with transaction.atomic():
        _lock_keys()
        # Re-read under the lock: a concurrent caller may have created it while we waited (READ COMMITTED
        # gives this statement a fresh snapshot).
        key = _current()
        if key is None:
            key = _create(actor or Actor.system("signing"), "signing_key_created", [])
    return key


def signing_key_rotate(*, actor: Actor | None = None) -> SigningKey:
    """Retire the current key (it stays published) and create the one that signs from now on."""
    with transaction.atomic():
        _lock_keys()
        now = timezone.now()
        retiring = list(SigningKey.objects.filter(retired_at__isnull=True).values_list("key_id", flat=True))
        SigningKey.objects.filter(retired_at__isnull=True).update(retired_at=now)
        return _create(actor or Actor.system("signing"), "signing_key_rotated", retiring)


def published_keys() -> list[dict]:
    """Every key ever used, newest first: retired keys stay so that old reports stay verifiable."""
    return [
        {
            "key_id": key.key_id,
            "alg": ALG,
            "public_key": key.public_key,
            "created_at": key.created_at.isoformat().replace("+00:00", "Z"),
            "retired_at": key.retired_at.isoformat().replace("+00:00", "Z") if key.retired_at else None,
        }
        for key in SigningKey.objects.order_by("-created_at", "-id")
    ]


# --- signatures -----------------------------------------------------------------------------------

def sign_payload(payload: bytes) -> tuple[str, str]:
    """Sign ``payload`` with the current key: (key_id, base64url signature)."""
    key = signing_key_current()
    return key.key_id, b64url(_private_key(key.key_id, key.private_key_encrypted).sign(payload))


@lru_cache(maxsize=8)
def _private_key(key_id: str, private_key_encrypted: str) -> Ed25519PrivateKey:
    # Which key is current is read from the database on every signature, so a rotation takes effect at
    # once in every process; only the decrypted key object of a given row is kept.
    return Ed25519PrivateKey.from_private_bytes(b64url_decode(decrypt(private_key_encrypted)))


def verify_signature(payload: bytes, signature: str, public_key: str) -> bool:
    """Check a base64url signature against a base64url raw Ed25519 public key. No database."""
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(public_key)).verify(b64url_decode(signature), payload)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_payload(payload: bytes, key_id: str, signature: str) -> bool:
    """Check ``signature`` over the signed bytes (canonical document) with the published key ``key_id``."""
    key = SigningKey.objects.filter(key_id=key_id).first()
    return key is not None and verify_signature(payload, signature, key.public_key)


def verify_envelope(payload: bytes, *, public_keys: Mapping[str, str] | None = None) -> dict:
    """Verify a frozen payload as a receiver would, and return its document.

    ``public_keys`` maps key_id to base64url public key (e.g. from the well-known endpoint); without it the
    published keys of this service are used. Raises SignatureInvalid when anything does not hold.
    """
    try:
        envelope = json.loads(payload)
        document, signature = envelope["document"], envelope["signature"]
        key_id, value = signature["key_id"], signature["value"]
        alg = signature["alg"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SignatureInvalid(f"not a signed report envelope: {exc}") from None
    if alg != ALG:
        raise SignatureInvalid(f"unsupported signature algorithm {alg!r}")
    if public_keys is None:
        public_keys = dict(SigningKey.objects.filter(key_id=key_id).values_list("key_id", "public_key"))
    if key_id not in public_keys:
        raise SignatureInvalid(f"unknown signing key {key_id!r}")
    if not verify_signature(canonical_bytes(document), value, public_keys[key_id]):
        raise SignatureInvalid("the signature does not match the document")
    return document


# --- the single entry point of the delivery service -----------------------------------------------

def freeze(report: Report) -> tuple[bytes, str, str, str]:
    """Build, canonicalise and sign ``report``'s document once: (payload, payload_sha256, key_id, signature).

    ``payload`` is what every attempt sends, byte for byte; ``payload_sha256`` is over those bytes
    (the envelope); the signature is over the canonical document inside it. Raises
    reporting.packaging.document.PackagingRefused when the document must not go to this destination.
    """
    document = build_document(report=report)
    signed = canonical_bytes(document)
    key_id, signature = sign_payload(signed)
    envelope = {
        "document": document,
        "signature": {
            "alg": ALG,
            "key_id": key_id,
            "value": signature,
            "canonicalization": CANONICALIZATION,
            "document_sha256": payload_sha256(signed),
        },
    }
    payload = canonical_bytes(envelope)
    return payload, payload_sha256(payload), key_id, signature
