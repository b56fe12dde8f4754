"""Digests through the outbox: delivered to the sandbox receiver, a real TAXII server and e-mail, escalated,
shown on the clock board, and opened and frozen under real concurrency on PostgreSQL."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone as dj_timezone

from incidents.models import Incident
from incidents.services.intake import incident_create
from reporting.models import DigestEntry, Report
from reporting.services.delivery import report_deliver
from reporting.services.escalation import escalations_scan
from reporting.services.reports import report_approve
from tests.conftest import incident_fields, login_verified
from tests.reporting.conftest import SYSTEM, make_destination
from tests.reporting.test_delivery import receiver  # noqa: F401  (the sandbox receiver fixture)
from tests.reporting.test_digests import digest_of, sev3
from tests.reporting.test_taxii_transport import endpoint, send, stored, taxii  # noqa: F401  (medallion)

# --- the outbox: delivered, verified, escalated --------------------------------------------------------


@pytest.mark.django_db
def test_a_weekly_digest_is_delivered_to_the_sandbox_and_verified(receiver, staff_actor):  # noqa: F811
    destination, ledger = receiver
    last_week = dj_timezone.now() - timedelta(days=7)
    first, second = sev3(detected_at=last_week), sev3(detected_at=last_week)
    digest = digest_of(first)
    report_approve(report=digest, actor=staff_actor)
    assert report_deliver(report_id=digest.pk).outcome == "delivered"
    digest.refresh_from_db()
    assert digest.status == "delivered" and digest.payload_sha256
    [entry] = ledger.entries()
    assert entry["verified"] is True and entry["webhook_id"] == str(digest.public_id)
    received = json.loads(ledger.body(str(digest.public_id)))
    assert received["document"]["schema"] == "urn:mir:digest:v1"
    assert {i["incident_id"] for i in received["document"]["incidents"]} == {str(first.public_id),
                                                                              str(second.public_id)}


@pytest.mark.django_db
def test_an_overdue_digest_is_escalated_like_any_stage(default_destination):
    digest = digest_of(sev3(detected_at=dj_timezone.now() - timedelta(days=21)))
    assert escalations_scan() >= 1
    assert set(digest.escalations.values_list("level", flat=True)) >= {"overdue"}


@pytest.mark.django_db
def test_the_clock_board_shows_digests_and_their_incidents(client, staff_user, default_destination):
    incident = sev3()
    digest = digest_of(incident)
    login_verified(client, staff_user)
    board = client.get(reverse("admin:reporting_report_changelist")).content.decode()
    assert f"digest {digest.period_start:%Y-%m-%d}" in board
    page = client.get(reverse("admin:reporting_report_change", args=[digest.pk])).content.decode()
    assert incident.reference in page and "urn:mir:digest:v1" in page


@pytest.mark.django_db
def test_a_digest_goes_by_email_too_named_by_its_title(staff_actor, mailoutbox):
    make_destination("authority-mail", transport="email", address="reports@authority.example", secret="")
    digest = digest_of(sev3(detected_at=dj_timezone.now() - timedelta(days=7)))
    report_approve(report=digest, actor=staff_actor)
    assert report_deliver(report_id=digest.pk).outcome == "delivered"
    [message] = mailoutbox
    assert "Weekly digest" in message.subject and message.attachments


# --- concurrency (real transactions on PostgreSQL) -------------------------------------------------------


def _in_threads(*works) -> list:
    """Run each callable in its own thread and DB connection, released together; exceptions are returned."""
    barrier, results = threading.Barrier(len(works)), [None] * len(works)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = works[index]()
        except Exception as exc:  # noqa: BLE001  (reported to the test, which fails on it)
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _sev4_intake() -> int:
    return incident_create(actor=SYSTEM, fields=incident_fields(severity="SEV-4")).incident.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_intakes_open_one_digest_and_all_join_it():
    make_destination()
    results = _in_threads(*[_sev4_intake] * 6)
    assert all(isinstance(r, int) for r in results), results
    digest = Report.objects.get(incident__isnull=True)
    assert DigestEntry.objects.filter(digest=digest).count() == 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_intake_that_meets_a_freeze_in_progress_joins_the_next_period():
    make_destination()
    digest = digest_of(Incident.objects.get(pk=_sev4_intake()))
    locked, late_pk = threading.Event(), []

    def freeze_in_progress() -> None:
        with transaction.atomic():
            # As report_freeze does: FOR UPDATE first (a plain UPDATE would take only FOR NO KEY UPDATE, which
            # intakes' FOR KEY SHARE does not wait for), then the frozen columns.
            list(Report.objects.select_for_update().filter(pk=digest.pk))
            Report.objects.filter(pk=digest.pk).update(frozen_at=dj_timezone.now())
            locked.set()
            # Hold the lock until the intake waits on it (or 10 s pass: the outcome is the same either way).
            for _ in range(200):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND datname = current_database()")
                    if cursor.fetchone()[0]:
                        break
                threading.Event().wait(0.05)

    def intake_after_lock() -> None:
        locked.wait(timeout=10)
        late_pk.append(_sev4_intake())

    results = _in_threads(freeze_in_progress, intake_after_lock)
    assert results == [None, None], results
    following = digest_of(Incident.objects.get(pk=late_pk[0]))
    assert following.period_start == digest.period_end
    assert DigestEntry.objects.filter(digest=digest).count() == 1


@pytest.mark.django_db
def test_a_digest_arrives_at_a_real_taxii_server_and_verifies(taxii, default_destination):  # noqa: F811
    from reporting.packaging.stix import MIR_EXTENSION
    from reporting.signing import freeze, verify_envelope
    from reporting.transports.base import FrozenReport

    incident = sev3()
    digest = Report.objects.select_related("destination", "rule", "stage").get(pk=digest_of(incident).pk)
    payload, sha256, _key_id, _signature = freeze(digest)
    frozen = FrozenReport(message_id=str(digest.public_id), payload=payload, document=json.loads(payload),
                          payload_sha256=sha256, stage_name=digest.stage_name, stage_kind=digest.stage_kind,
                          sequence=1)
    result = send(frozen, endpoint(taxii, tlp=default_destination.tlp))
    assert result.outcome == "delivered", result
    (stored_report,) = stored(taxii, result.receipt["report_object_id"])
    document = verify_envelope(stored_report["extensions"][MIR_EXTENSION]["payload"].encode())
    assert document["schema"] == "urn:mir:digest:v1"
    [incident_ref] = [ref for ref in stored_report["object_refs"] if ref.startswith("incident--")]
    (stored_incident,) = stored(taxii, incident_ref)
    assert stored_incident["name"].startswith(incident.reference)
