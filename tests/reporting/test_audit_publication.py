"""The audit chain's head leaves the lab: in every frozen report and at a well-known URL, so authorities hold
checkpoints that audit_verify can later be held to."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from incidents.models import AuditChainHead, AuditEvent
from incidents.services.audit_chain import audit_seal
from reporting.packaging.document import build_document
from reporting.services.delivery import report_freeze
from reporting.signing import verify_envelope
from tests.conftest import make_incident
from tests.incidents.test_audit_verify import forged_hash
from tests.reporting.test_packaging import assert_valid, make_dest, make_report

pytestmark = pytest.mark.django_db

HEAD_URL = "/.well-known/mir-audit-head.json"


def a_report():
    return make_report(make_incident(), make_dest())


def test_before_anything_is_sealed_the_document_says_null():
    report = a_report()
    document = build_document(report=report)
    assert document["audit_chain_head"] is None
    assert_valid(document)


def test_the_frozen_document_carries_the_sealed_head_under_its_signature():
    report = a_report()
    audit_seal()
    head = AuditChainHead.objects.get()
    frozen = report_freeze(report_id=report.pk)

    document = verify_envelope(frozen.payload.encode("utf-8"))
    assert document["audit_chain_head"] == {
        "seq": head.seq, "hash": head.hash, "sealed_at": head.sealed_at.isoformat().replace("+00:00", "Z"),
    }
    assert_valid(document)


def test_events_not_yet_sealed_are_not_in_the_published_head():
    report = a_report()
    audit_seal()
    sealed = AuditChainHead.objects.get().seq
    make_incident(title="after the seal")
    assert build_document(report=report)["audit_chain_head"]["seq"] == sealed


def test_a_document_without_the_head_still_validates():
    """Additive within v1: documents frozen before the field existed stay valid."""
    document = build_document(report=a_report())
    del document["audit_chain_head"]
    assert_valid(document)


@pytest.mark.parametrize(
    "bad",
    [{"seq": 0, "hash": "a" * 64, "sealed_at": "2026-01-01T00:00:00Z"},
     {"seq": 1, "hash": "A" * 64, "sealed_at": "2026-01-01T00:00:00Z"},
     {"seq": 1, "hash": "a" * 64},
     {"seq": 1, "hash": "a" * 64, "sealed_at": "2026-01-01T00:00:00Z", "extra": 1},
     "1:" + "a" * 64],
)
def test_the_schema_refuses_a_malformed_head(bad):
    document = build_document(report=a_report())
    document["audit_chain_head"] = bad
    with pytest.raises(AssertionError):
        assert_valid(document)


def test_the_head_a_report_carried_is_a_checkpoint_audit_verify_holds_the_lab_to():
    report = a_report()
    audit_seal()
    head = verify_envelope(report_freeze(report_id=report.pk).payload.encode())["audit_chain_head"]
    checkpoint = f"{head['seq']}:{head['hash']}"
    call_command("audit_verify", "--checkpoint", checkpoint, stdout=StringIO(), stderr=StringIO())

    # Rewrite the checkpointed event and every hash after it, head included: only the checkpoint tells.
    first = AuditEvent.objects.get(chain_seq=1)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE incidents_auditevent SET reason = 'rewritten' WHERE id = %s", [first.pk])
    prev = "0" * 64
    for event in AuditEvent.objects.filter(chain_seq__isnull=False).order_by("chain_seq"):
        digest = forged_hash(event.pk, event.chain_seq, prev)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE incidents_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                           [prev, digest, event.pk])
        prev = digest
    AuditChainHead.objects.update(hash=prev)
    with pytest.raises(CommandError) as caught:
        call_command("audit_verify", "--checkpoint", checkpoint, stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 1
    assert "checkpoint mismatch" in str(caught.value)


def test_the_well_known_head_is_public_and_short_lived():
    response = Client().get(HEAD_URL)
    assert response.status_code == 200
    assert json.loads(response.content) == {"audit_chain_head": None}

    make_incident()
    audit_seal()
    head = AuditChainHead.objects.get()
    response = Client().get(HEAD_URL)
    assert response.status_code == 200
    assert json.loads(response.content)["audit_chain_head"] == {
        "seq": head.seq, "hash": head.hash, "sealed_at": head.sealed_at.isoformat().replace("+00:00", "Z"),
    }
    assert "max-age=10" in response["Cache-Control"]
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_well_known_head_is_read_only(method):
    response = getattr(Client(), method)(HEAD_URL)
    assert response.status_code == 405
    assert not AuditChainHead.objects.exists()
