"""Ed25519 signatures: keys, the frozen envelope, third-party verification, rotation, the key endpoint."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from io import StringIO
from pathlib import Path

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from incidents.models import AuditEvent
from reporting.choices import Disclosure
from reporting.encryption import decrypt
from reporting.models import SigningKey
from reporting.packaging.canonical import canonical_bytes
from reporting.signing import (
    SignatureInvalid,
    freeze,
    key_id_for,
    published_keys,
    sign_payload,
    signing_key_current,
    signing_key_rotate,
    verify_envelope,
    verify_payload,
)
from tests.conftest import make_incident
from tests.reporting.test_packaging import PROMPT, SCHEMA, full_incident, make_dest, make_report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "report-format.md"
KEYS_URL = "/.well-known/mir-signing-keys.json"


def documented_verifier():
    """The verification snippet of docs/report-format.md, run exactly as published."""
    text = DOCS.read_text()
    block = re.search(r"<!-- verification-snippet:start -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert block, "docs/report-format.md lost its verification snippet"
    namespace: dict = {}
    exec(compile(block.group(1), str(DOCS), "exec"), namespace)  # noqa: S102  (our own documentation)
    return namespace["verify_report"]


def fetch_keys() -> dict:
    response = Client().get(KEYS_URL)
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture
def frozen(db):
    report = make_report(make_incident(), make_dest())
    payload, digest, key_id, signature = freeze(report)
    return report, payload, digest, key_id, signature


# --- the envelope ---------------------------------------------------------------------------------

def test_freeze_returns_a_canonical_signed_envelope(frozen):
    report, payload, digest, key_id, signature = frozen
    assert digest == hashlib.sha256(payload).hexdigest()
    envelope = json.loads(payload)
    assert rfc8785.dumps(envelope) == payload
    assert set(envelope) == {"document", "signature"}
    assert envelope["signature"] == {
        "alg": "Ed25519", "key_id": key_id, "value": signature, "canonicalization": "RFC8785",
        "document_sha256": hashlib.sha256(canonical_bytes(envelope["document"])).hexdigest(),
    }
    assert envelope["document"]["identity"]["report_id"] == str(report.public_id)
    # The signed bytes appear verbatim inside the payload (RFC 8785 is compositional).
    assert canonical_bytes(envelope["document"]) in payload
    registry = Registry().with_resource(SCHEMA["$id"], Resource.from_contents(SCHEMA))
    envelope_validator = Draft202012Validator({"$ref": f"{SCHEMA['$id']}#/$defs/envelope"}, registry=registry)
    assert not list(envelope_validator.iter_errors(envelope))


def test_the_published_snippet_verifies_with_the_key_from_the_endpoint(frozen):
    report, payload, _digest, _key_id, _signature = frozen
    document = documented_verifier()(payload, fetch_keys())
    assert document["identity"]["report_id"] == str(report.public_id)
    assert verify_envelope(payload)["identity"]["report_id"] == str(report.public_id)


def test_one_changed_byte_fails_verification(frozen):
    _report, payload, _digest, key_id, signature = frozen
    envelope = json.loads(payload)
    signed = canonical_bytes(envelope["document"])
    assert verify_payload(signed, key_id, signature)
    position = signed.index(b'"title":"') + len(b'"title":"')
    tampered_signed = signed[:position] + bytes([signed[position] ^ 0x01]) + signed[position + 1:]
    assert not verify_payload(tampered_signed, key_id, signature)
    tampered_payload = payload.replace(signed, tampered_signed)
    assert tampered_payload != payload and len(tampered_payload) == len(payload)
    with pytest.raises(InvalidSignature):
        documented_verifier()(tampered_payload, fetch_keys())
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_envelope(tampered_payload)


def test_verification_refuses_unknown_keys_and_garbage(frozen):
    _report, payload, _digest, key_id, signature = frozen
    signed = canonical_bytes(json.loads(payload)["document"])
    assert not verify_payload(signed, "0000000000000000", signature)
    assert not verify_payload(signed, key_id, "not-base64-!!")
    assert not verify_payload(signed, key_id, signature[:-4] + "AAAA")
    with pytest.raises(SignatureInvalid, match="unknown signing key"):
        verify_envelope(payload, public_keys={})
    with pytest.raises(SignatureInvalid, match="not a signed report envelope"):
        verify_envelope(b'{"document": {}}')


@pytest.mark.django_db
def test_the_raw_content_envelope_verifies_and_carries_the_content(staff_user):
    report = make_report(full_incident(), make_dest(max_disclosure=Disclosure.RAW_CONTENT),
                         disclosure=Disclosure.RAW_CONTENT, approved_by=staff_user)
    payload, *_ = freeze(report)
    assert PROMPT.encode() in payload
    assert documented_verifier()(payload, fetch_keys())["handling"]["disclosure"] == "raw_content"


# --- keys ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_first_key_is_created_on_demand_stored_encrypted_and_audited():
    assert not SigningKey.objects.exists()
    key = signing_key_current()
    assert signing_key_current().pk == key.pk
    raw_public = base64.urlsafe_b64decode(key.public_key + "=")
    assert len(raw_public) == 32 and key.key_id == key_id_for(raw_public) == hashlib.sha256(raw_public).hexdigest()[:16]
    raw_private_b64 = decrypt(key.private_key_encrypted)
    assert raw_private_b64 not in key.private_key_encrypted
    assert AuditEvent.objects.filter(action="signing_key_created", object_type="reporting.signingkey").count() == 1


@pytest.mark.django_db
def test_after_rotation_old_signatures_verify_and_new_ones_use_the_new_key():
    first_report = make_report(make_incident(), make_dest())
    old_payload, _digest, old_key_id, _sig = freeze(first_report)
    out = StringIO()
    call_command("signing_key_rotate", stdout=out)
    new_key_id = out.getvalue().strip()
    assert re.fullmatch(r"[0-9a-f]{16}", new_key_id) and new_key_id != old_key_id
    assert signing_key_current().key_id == new_key_id

    new_payload, _digest, used_key_id, _sig = freeze(make_report(make_incident(), make_dest("authority-b")))
    assert used_key_id == new_key_id
    published = fetch_keys()
    listed = {k["key_id"]: k for k in published["keys"]}
    assert set(listed) == {old_key_id, new_key_id}
    assert listed[old_key_id]["retired_at"] is not None and listed[new_key_id]["retired_at"] is None
    verify = documented_verifier()
    assert verify(old_payload, published)["identity"]["report_id"] == str(first_report.public_id)
    assert verify(new_payload, published)
    assert AuditEvent.objects.filter(action="signing_key_rotated").get().changes == {
        "key_id": new_key_id, "retired": [old_key_id],
    }


@pytest.mark.django_db
def test_sign_payload_signs_with_the_current_key():
    key_id, signature = sign_payload(b"hello")
    assert key_id == signing_key_current().key_id
    assert verify_payload(b"hello", key_id, signature) and not verify_payload(b"hellO", key_id, signature)
    rotated = signing_key_rotate()
    assert sign_payload(b"hello")[0] == rotated.key_id
    assert verify_payload(b"hello", key_id, signature)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_key_creation_creates_one_key():
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            results.append(signing_key_current().key_id)
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert SigningKey.objects.count() == 1
    assert set(results) == {SigningKey.objects.get().key_id} and len(results) == threads_count


# --- the endpoint ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_key_endpoint_is_public_short_cached_and_lists_every_key():
    Client().get(KEYS_URL)
    assert not SigningKey.objects.exists()  # a GET never creates a key
    signing_key_current()
    signing_key_rotate()
    response = Client().get(KEYS_URL)  # no login
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "max-age=300" in response["Cache-Control"] and "public" in response["Cache-Control"]
    body = json.loads(response.content)
    assert body == {"keys": published_keys()}
    assert [set(k) for k in body["keys"]] == [{"key_id", "alg", "public_key", "created_at", "retired_at"}] * 2
    assert all(k["alg"] == "Ed25519" and k["created_at"].endswith("Z") for k in body["keys"])
    assert not any("private" in json.dumps(k) for k in body["keys"])
    assert Client().post(KEYS_URL).status_code == 405
