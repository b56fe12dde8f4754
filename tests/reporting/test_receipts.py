"""Proof of submission: the Receipt written with every delivery, over each transport, and who may read it."""
from __future__ import annotations

import hashlib
import json
import socket
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from incidents.models import AuditEvent
from incidents.models.audit import AppendOnlyError
from reporting.choices import AttemptOutcome, ReportStatus
from reporting.models import DeliveryAttempt, Receipt, Report
from reporting.portal.services.authorities import authority_get_or_create
from reporting.selectors import receipt_for_report, receipt_of, receipts_for_authority
from reporting.services.delivery import report_deliver
from reporting.services.receipts import public_address, receipt_record
from reporting.transports.base import SendResult
from tests.conftest import SYSTEM, login_verified, make_incident
from tests.reporting.conftest import make_destination
from tests.reporting.test_delivery import _set_mode, receiver, smtp_server  # noqa: F401  (fixtures)
from tests.reporting.test_taxii_transport import taxii  # noqa: F401  (fixture)


def _early_notice(incident) -> Report:
    return Report.objects.get(incident=incident, stage_name="early_notice")


def _dead_port() -> int:
    with socket.socket() as probe:  # nothing listens once it is closed: connection refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- webhook ----------------------------------------------------------------------------------------
def test_a_webhook_delivery_writes_one_receipt_of_what_the_receiver_got(receiver):  # noqa: F811
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    proof = Receipt.objects.get(report=report)
    [entry] = ledger.entries()
    # What was sent is what the receiver hashed and what the report stores, byte for byte.
    assert proof.payload_sha256 == entry["payload_sha256"] == report.payload_sha256
    assert proof.payload_sha256 == hashlib.sha256(report.payload.encode()).hexdigest()
    assert proof.payload_size == len(report.payload.encode())
    assert proof.message_id == report.public_id and entry["webhook_id"] == str(report.public_id)
    assert proof.signing_key_id == report.signing_key_id
    assert proof.transport == "webhook" and proof.address == destination.address
    assert proof.destination == destination and proof.authority == destination.authority.name and not proof.via_fallback
    assert proof.delivered_at == report.delivered_at and proof.sent_at <= proof.delivered_at
    assert proof.response_status == 200
    assert json.loads(proof.response_excerpt)["receipt_id"] == entry["receipt_id"]
    assert proof.attempt == report.attempts.get() and proof.attempt.outcome == AttemptOutcome.DELIVERED
    # The delivery's audit event names the receipt; it is the only event the delivery wrote.
    [event] = AuditEvent.objects.filter(action="report_delivered", changes__report=str(report.public_id))
    assert event.changes["receipt"] == {"payload_sha256": proof.payload_sha256, "address": proof.address,
                                        "transport": "webhook", "response_status": 200}


def test_failed_attempts_leave_no_receipt_and_the_one_that_succeeds_is_the_proof(receiver):  # noqa: F811
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    _set_mode(ledger, mode="fail")
    assert report_deliver(report_id=report.pk).outcome == "transient"
    assert not Receipt.objects.filter(report=report).exists()
    _set_mode(ledger, mode="ok")
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    proof = Receipt.objects.get(report=report)
    assert proof.attempt.number == 2 and proof.response_status == 200
    # Delivered reports are not sent again, so there is never a second receipt.
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
    assert report_deliver(report_id=report.pk).outcome == "skipped"
    assert Receipt.objects.filter(report=report).count() == 1


def test_a_refused_report_gets_no_receipt(receiver):  # noqa: F811
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    _set_mode(ledger, mode="reject")
    assert report_deliver(report_id=report.pk).outcome == "permanent"
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED and not Receipt.objects.filter(report=report).exists()


def test_a_webhook_address_with_credentials_or_a_token_is_stored_without_them(db):
    url = f"http://hook-user:hook-pass@127.0.0.1:{_dead_port()}/in?token=s3cret#frag"
    make_destination("authority-a", address=url)
    report = _early_notice(make_incident(severity="SEV-1"))
    attempt = DeliveryAttempt.objects.create(report=report, number=1, started_at=timezone.now(), duration_ms=3,
                                             outcome=AttemptOutcome.DELIVERED, address="x")
    Report.objects.filter(pk=report.pk).update(payload="{}", payload_sha256="a" * 64, signing_key_id="k")
    report = Report.objects.select_related("destination", "incident").get(pk=report.pk)
    with transaction.atomic():
        proof = receipt_record(report=report, attempt=attempt, destination=report.destination, actor=SYSTEM,
                               result=SendResult(outcome=AttemptOutcome.DELIVERED, http_status=202),
                               delivered_at=timezone.now(), release={})
    assert "hook-pass" not in proof.address and "s3cret" not in proof.address and "hook-user" not in proof.address
    assert proof.address.startswith("http://127.0.0.1:") and proof.address.endswith("/in")


@pytest.mark.parametrize(("address", "shown"), [
    ("https://a.example/in", "https://a.example/in"),
    ("https://u:p@a.example:8443/in?k=v", "https://a.example:8443/in"),
    ("https://[::1]:9/x", "https://[::1]:9/x"),
    ("duty@authority.example", "duty@authority.example"),
    ("https://a.example/taxii2/api/collections/c1/", "https://a.example/taxii2/api/collections/c1/"),
])
def test_public_address_drops_credentials_query_and_fragment(address, shown):
    assert public_address(address) == shown


# --- TAXII and e-mail -------------------------------------------------------------------------------
def test_a_taxii_delivery_receipt_holds_the_collection_and_the_taxii_status(db, taxii):  # noqa: F811
    destination = make_destination("authority-taxii", transport="taxii", address=taxii.collection_url(),
                                   username=taxii.username, secret=taxii.password)
    report = _early_notice(make_incident(severity="SEV-1"))
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    proof = Receipt.objects.get(report=report)
    assert proof.transport == "taxii" and proof.address == taxii.collection_url() == destination.address
    assert taxii.password not in proof.address and taxii.password not in proof.response_excerpt
    assert proof.payload_sha256 == report.payload_sha256 and proof.message_id == report.public_id
    status = json.loads(proof.response_excerpt)
    assert status["status"] == "complete" and status["report_object_id"] == report.receipt["report_object_id"]
    assert proof.response_status is not None and 200 <= proof.response_status < 300


def test_an_email_fallback_receipt_names_the_mailbox_and_the_primary_stays_in_scope(db, smtp_server, settings):  # noqa: F811
    fallback = make_destination("authority-a-mail", transport="email", address="duty@authority.example",
                                secret="", rules=None, authority="Authority authority-a")
    primary = make_destination("authority-a", address=f"http://127.0.0.1:{_dead_port()}/webhook", fallback=fallback)
    settings.MIR_FALLBACK_THRESHOLD_SECONDS = 3600
    report = _early_notice(make_incident(severity="SEV-1"))
    assert report_deliver(report_id=report.pk).outcome == "transient"
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now(),
                                               due_at=timezone.now() + timedelta(minutes=30))
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    proof = Receipt.objects.get(report=report)
    assert proof.transport == "email" and proof.address == "duty@authority.example" and proof.via_fallback
    assert proof.destination == fallback and proof.response_status is None
    assert json.loads(proof.response_excerpt)["to"] == "duty@authority.example"
    [message] = smtp_server.messages
    assert proof.payload_sha256 in message.content.decode()
    # Scoped by the authority the report was owed to (the primary's), whichever channel carried it.
    assert receipt_for_report(authority=primary.authority, report_public_id=report.public_id) == proof


# --- immutability -----------------------------------------------------------------------------------
def test_a_receipt_cannot_be_edited_or_deleted(receiver):  # noqa: F811
    report = _early_notice(make_incident(severity="SEV-1"))
    report_deliver(report_id=report.pk)
    proof = Receipt.objects.get(report=report)
    proof.payload_sha256 = "0" * 64
    with pytest.raises(AppendOnlyError):
        proof.save()
    with pytest.raises(AppendOnlyError):
        proof.delete()
    with pytest.raises(AppendOnlyError):
        Receipt.objects.filter(pk=proof.pk).update(payload_sha256="0" * 64)
    with pytest.raises(AppendOnlyError):
        Receipt.objects.filter(pk=proof.pk).delete()
    assert Receipt.objects.get(pk=proof.pk).payload_sha256 == report.__class__.objects.get(pk=report.pk).payload_sha256


def test_a_receipt_must_hold_a_sha256(receiver):  # noqa: F811
    from django.db import IntegrityError

    report = _early_notice(make_incident(severity="SEV-1"))
    report_deliver(report_id=report.pk)
    proof = Receipt.objects.get(report=report)
    other = _early_notice(make_incident(severity="SEV-1", title="another"))
    attempt = DeliveryAttempt.objects.create(report=other, number=1, started_at=timezone.now(), duration_ms=1,
                                             outcome=AttemptOutcome.DELIVERED, address="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        Receipt.objects.create(report=other, attempt=attempt, destination=proof.destination, authority="a",
                               transport="webhook", address="x", message_id=other.public_id, payload_sha256="nothex",
                               payload_size=1, signing_key_id="k", sent_at=timezone.now(),
                               delivered_at=timezone.now())
    assert not Receipt.objects.filter(report=other).exists()


# --- who reads it -----------------------------------------------------------------------------------
def test_the_selector_shows_an_authority_only_its_own_delivered_receipts(receiver):  # noqa: F811
    destination, ledger = receiver
    mine = _early_notice(make_incident(severity="SEV-1", title="mine"))
    report_deliver(report_id=mine.pk)
    pending = _early_notice(make_incident(severity="SEV-1", title="not yet"))
    other_authority = authority_get_or_create(actor=SYSTEM, name="Someone else")
    assert list(receipts_for_authority(authority=destination.authority)) == [Receipt.objects.get(report=mine)]
    assert receipt_for_report(authority=destination.authority, report_public_id=mine.public_id).report == mine
    for authority, report in [(other_authority, mine), (destination.authority, pending)]:
        with pytest.raises(Receipt.DoesNotExist):
            receipt_for_report(authority=authority, report_public_id=report.public_id)
    assert not receipts_for_authority(authority=other_authority).exists()


def test_the_selector_reads_a_page_of_receipts_in_one_query(receiver, django_assert_num_queries):  # noqa: F811
    destination, ledger = receiver
    for i in range(3):
        report_deliver(report_id=_early_notice(make_incident(severity="SEV-1", title=f"i{i}")).pk)
    with django_assert_num_queries(1):
        rows = list(receipts_for_authority(authority=destination.authority))
        assert {r.report.destination.authority_id for r in rows} == {destination.authority_id}
        assert all(r.attempt.number == 1 and r.destination.name for r in rows)


def test_the_report_admin_page_shows_the_receipt(receiver, client, staff_user):  # noqa: F811
    login_verified(client, staff_user)
    report = _early_notice(make_incident(severity="SEV-1"))
    url = reverse("admin:reporting_report_change", args=[report.pk])
    assert "written when the report is delivered" in client.get(url).content.decode()
    report_deliver(report_id=report.pk)
    proof = receipt_of(report)
    html = client.get(url).content.decode()
    assert "Proof of submission" in html and proof.payload_sha256 in html and str(proof.message_id) in html
    assert proof.address in html and proof.authority in html
