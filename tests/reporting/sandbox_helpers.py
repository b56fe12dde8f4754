"""Reports signed like reporting/signing.py signs them (docs/report-format.md), built without the database,
and a handle on a running sandbox receiver: for tests that play the lab against the sandbox."""
from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reporting.sandbox_receiver.ledger import Ledger
from reporting.transports.base import Endpoint, FrozenReport, SendResult
from reporting.transports.webhook import WebhookTransport

SECRET = "whsec_" + base64.b64encode(b"authority-a-secret-32-bytes-long").decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PrivateKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]  # as docs/report-format.md derives it


def keys_json(*keys: Ed25519PrivateKey) -> bytes:
    return json.dumps({"keys": [{"key_id": key_id(key), "alg": "Ed25519", "public_key": b64url(raw_public(key)),
                                 "created_at": "2026-01-01T00:00:00Z", "retired_at": None} for key in keys]}).encode()


def document(report_id: str, **identity) -> dict:
    """A small document in the shape of docs/report-format.md (the sandbox does not check the schema)."""
    return {
        "schema": "urn:mir:report:v1",
        "generated_at": "2026-11-27T03:00:00Z",
        "identity": {"report_id": report_id, "incident_id": "6d1f0c2e-52a8-4a9e-9a53-0d7c1b8e2f10",
                     "incident_reference": "INC-000042", "stage": "initial", "stage_kind": "initial",
                     "sequence": 1, "version": 1, "title": "Intrusion tooling written with the model",
                     "summary": "Accounts used the model to write an intrusion toolkit. Ünïcode ✓", **identity},
        "classification": {"category": "CYBER", "severity": "SEV-1"},
        "handling": {"tlp": "TLP:AMBER+STRICT", "recipient": {"authority": "Authority A"}},
    }


def envelope(doc: dict, key: Ed25519PrivateKey, **signature_overrides) -> dict:
    signed = rfc8785.dumps(doc)
    signature = {"alg": "Ed25519", "key_id": key_id(key), "value": b64url(key.sign(signed)),
                 "canonicalization": "RFC8785", "document_sha256": hashlib.sha256(signed).hexdigest()}
    return {"document": doc, "signature": {**signature, **signature_overrides}}


def frozen(payload: bytes, message_id: str) -> FrozenReport:
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = {}  # some tests send what a buggy sender might
    return FrozenReport(message_id=message_id, payload=payload, document=parsed,
                        payload_sha256=hashlib.sha256(payload).hexdigest(), stage_name="initial",
                        stage_kind="initial", sequence=1)


def signed_report(key: Ed25519PrivateKey, message_id: str | None = None, **identity) -> FrozenReport:
    message_id = message_id or str(uuid.uuid4())
    return frozen(rfc8785.dumps(envelope(document(message_id, **identity), key)), message_id)


@dataclass
class Receiver:
    base: str
    ledger: Ledger
    keys_file: Path
    key: Ed25519PrivateKey

    def report(self, message_id: str | None = None, **identity) -> FrozenReport:
        return signed_report(self.key, message_id, **identity)

    def deliver(self, report: FrozenReport, *, secret: str = SECRET, timeout: float = 5.0) -> SendResult:
        endpoint = Endpoint(transport="webhook", address=f"{self.base}/webhook", secret=secret)
        return WebhookTransport().send(report, endpoint, timeout_seconds=timeout)

    def control(self, **state) -> dict:
        response = httpx.post(f"{self.base}/control", json=state, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def entries(self) -> list[dict]:
        return httpx.get(f"{self.base}/ledger", timeout=5).json()
