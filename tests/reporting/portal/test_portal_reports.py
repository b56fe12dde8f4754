"""What a reviewer sees: only their authority's delivered snapshots, as sent, logged; everything else 404."""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import stix2
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from reporting.models import Destination, Receipt, Report, SigningKey
from reporting.packaging.stix import validate_bundle
from reporting.portal.models import AccessAction, ReviewerAccess
from reporting.signing import signing_key_rotate
from tests.reporting.portal.conftest import deliver, delivered_report, pending_report_a

LIST = reverse("portal:report-list")


def detail(report: Report) -> str:
    return reverse("portal:report-detail", args=[report.public_id])


def document(report: Report) -> str:
    return reverse("portal:report-document", args=[report.public_id])


def stix(report: Report) -> str:
    return reverse("portal:report-stix", args=[report.public_id])


def listed(response) -> list[str]:
    return [str(report.public_id) for report in response.context["reports"]]


def test_the_list_shows_only_the_authoritys_delivered_reports(client_a, report_a, report_b, world):
    pending = pending_report_a(world)
    response = client_a.get(LIST)
    assert response.status_code == 200
    assert listed(response) == [str(report_a.public_id)]
    body = response.content.decode()
    assert "Intrusion tooling for A" in body and "Intrusion tooling for B" not in body
    assert str(pending.public_id) not in body


@pytest.mark.parametrize("url", [detail, document, stix])
def test_out_of_scope_reports_are_404_never_403(client_a, report_b, world, url):
    pending = pending_report_a(world)
    missing = Report(public_id=uuid.uuid4())
    for report in (report_b, pending, missing):
        response = client_a.get(url(report))
        assert response.status_code == 404, report
    # Nothing about them reached the access log.
    assert not ReviewerAccess.objects.exclude(action=AccessAction.LIST).exists()


@pytest.mark.parametrize("url", [detail, document, stix])
def test_the_other_reviewer_is_404_on_a_report_to_a(client_b, report_a, url):
    assert client_b.get(url(report_a)).status_code == 404


@pytest.mark.parametrize("path", ["/portal/reports/not-a-uuid/", "/portal/reports/1/document.json"])
def test_malformed_report_ids_are_404(client_a, path):
    assert client_a.get(path).status_code == 404


def test_a_withdrawn_or_failed_report_is_out_of_scope(client_a, report_a):
    Report.objects.filter(pk=report_a.pk).update(status="failed", failed_at=report_a.delivered_at)
    assert client_a.get(detail(report_a)).status_code == 404
    assert listed(client_a.get(LIST)) == []


def test_the_detail_shows_the_frozen_document_not_the_live_incident(client_a, report_a):
    from incidents.models import Incident

    Incident.objects.filter(pk=report_a.incident_id).update(title="Renamed after delivery", category="FRAUD")
    response = client_a.get(detail(report_a))
    body = response.content.decode()
    assert "Intrusion tooling for A" in body and "Renamed after delivery" not in body
    assert report_a.payload_sha256 in body
    # Filters read what was sent too: the report was sent as CYBER.
    assert listed(client_a.get(LIST, {"category": "CYBER"})) == [str(report_a.public_id)]
    assert listed(client_a.get(LIST, {"category": "FRAUD"})) == []
    assert listed(client_a.get(LIST, {"q": "Renamed"})) == []


def test_the_detail_shows_a_valid_signature_attempts_and_the_receivers_answer(client_a, report_a):
    response = client_a.get(detail(report_a))
    assert response.context["signature"].state == "valid"
    body = response.content.decode()
    assert "Signature: valid." in body
    assert report_a.signing_key_id in body
    assert "Delivered" in body and "200" in body and "r-1" in body


def test_the_detail_shows_the_proof_of_submission(client_a, report_a):
    proof = Receipt.objects.get(report=report_a)
    body = client_a.get(detail(report_a)).content.decode()
    section = body[body.index("Proof of submission"):]
    # What was sent (the exact bytes' hash), to where, when, and what the receiver answered.
    assert proof.payload_sha256 == report_a.payload_sha256 and proof.payload_sha256 in section
    assert proof.address in section and str(proof.message_id) in section
    assert proof.sent_at.strftime("%Y-%m-%d %H:%M:%S") in section
    assert "accepted" in section and "r-1" in section


def test_a_tampered_payload_shows_an_invalid_signature(client_a, report_a):
    envelope = json.loads(report_a.payload)
    envelope["document"]["identity"]["title"] = "Tampered"
    Report.objects.filter(pk=report_a.pk).update(payload=json.dumps(envelope))
    response = client_a.get(detail(report_a))
    assert response.context["signature"].state == "invalid"
    assert not response.context["signature"].digest_matches
    assert "Signature: INVALID." in response.content.decode()


def test_a_key_that_is_not_published_shows_unknown_key(client_a, report_a):
    SigningKey.objects.filter(key_id=report_a.signing_key_id).update(key_id="0000000000000000")
    response = client_a.get(detail(report_a))
    assert response.context["signature"].state == "unknown_key"
    assert "Signature: unknown key." in response.content.decode()


def test_a_rotated_key_still_verifies(client_a, report_a):
    signing_key_rotate()
    assert client_a.get(detail(report_a)).context["signature"].state == "valid"


def test_the_json_download_is_byte_identical_to_what_was_sent(client_a, report_a):
    response = client_a.get(document(report_a))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == (
        f'attachment; filename="{report_a.sent_reference}-early_notice-1-{report_a.public_id}.json"')
    assert response.content == report_a.payload.encode("utf-8")
    assert hashlib.sha256(response.content).hexdigest() == report_a.payload_sha256


def test_the_stix_download_is_a_valid_stix_21_bundle_of_the_frozen_document(client_a, report_a):
    from incidents.models import Incident

    Incident.objects.filter(pk=report_a.incident_id).update(title="Renamed after delivery")
    response = client_a.get(stix(report_a))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/stix+json;version=2.1"
    assert response["Content-Disposition"].endswith('.stix.json"')
    bundle = json.loads(response.content)
    stix2.parse(bundle, allow_custom=False, version="2.1")
    validate_bundle(bundle)
    text = response.content.decode()
    assert "Intrusion tooling for A" in text and "Renamed after delivery" not in text
    [report_object] = [o for o in bundle["objects"] if o["type"] == "report"]
    extension = next(iter(report_object["extensions"].values()))
    assert extension["payload_sha256"] == report_a.payload_sha256
    # Deterministic: the same bytes every time.
    assert client_a.get(stix(report_a)).content == response.content


def test_the_other_stages_of_the_incident_to_the_same_authority_are_linked(client_a, report_a, world):
    later = Report.objects.filter(incident_id=report_a.incident_id, destination=world.destination_a).exclude(
        pk=report_a.pk).order_by("id").first()
    deliver(later)
    to_b = Report.objects.filter(incident_id=report_a.incident_id, destination=world.destination_b).first()
    deliver(to_b)
    response = client_a.get(detail(report_a))
    assert [str(r.public_id) for r in response.context["others"]] == [str(later.public_id)]
    assert detail(later) in response.content.decode() and detail(to_b) not in response.content.decode()


def test_every_read_and_download_is_logged_with_reviewer_action_and_ip(client_a, report_a, world):
    client_a.get(LIST, {"severity": "SEV-1"})
    client_a.get(detail(report_a))
    client_a.get(document(report_a))
    client_a.get(stix(report_a))
    rows = list(ReviewerAccess.objects.order_by("id"))
    assert [(r.action, r.report_id) for r in rows] == [
        ("list", None), ("detail", report_a.pk), ("download_json", report_a.pk), ("download_stix", report_a.pk)]
    assert {r.reviewer_id for r in rows} == {world.reviewer_a.reviewer.pk}
    assert {r.ip for r in rows} == {"127.0.0.1"} and rows[0].query == "severity=SEV-1"
    from incidents.models import AuditEvent

    assert AuditEvent.objects.filter(action="portal_detail", incident_id=report_a.incident_id).count() == 1


def test_filters_by_delivered_date_category_severity_stage_and_search(client_a, report_a, world):
    fraud = delivered_report("authority-a", category="FRAUD", title="Bank phishing kit")
    day = report_a.delivered_at.date().isoformat()
    assert set(listed(client_a.get(LIST, {"delivered_from": day, "delivered_to": day}))) == {
        str(report_a.public_id), str(fraud.public_id)}
    assert listed(client_a.get(LIST, {"delivered_to": "2000-01-01"})) == []
    assert listed(client_a.get(LIST, {"category": "FRAUD"})) == [str(fraud.public_id)]
    assert set(listed(client_a.get(LIST, {"severity": "SEV-1"}))) == {str(report_a.public_id), str(fraud.public_id)}
    assert listed(client_a.get(LIST, {"severity": "SEV-0"})) == []
    assert set(listed(client_a.get(LIST, {"stage": "initial"}))) == {str(report_a.public_id), str(fraud.public_id)}
    assert listed(client_a.get(LIST, {"stage": "final"})) == []
    assert listed(client_a.get(LIST, {"q": "phishing"})) == [str(fraud.public_id)]
    assert listed(client_a.get(LIST, {"q": fraud.sent_reference.lower()})) == [str(fraud.public_id)]


@pytest.mark.parametrize("params", [
    {"delivered_from": "yesterday"}, {"delivered_from": "2026-13-01"}, {"delivered_to": "27/11/2026"},
    {"delivered_from": "2026-11-02", "delivered_to": "2026-11-01"}, {"delivered_from": "0001-01-01"},
    {"category": "NOPE"}, {"severity": "SEV-9"}, {"stage": "middle"}, {"q": "x" * 201}, {"q": "a\x00b"},
    {"page": "0"}, {"page": "-1"}, {"page": "two"}, {"page": "99999999999999999999"}, {"page": "5"},
])
def test_bad_query_parameters_are_a_clear_400_not_a_500(client_a, report_a, params):
    response = client_a.get(LIST, params)
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert response.context["page"] is None


def test_a_bad_field_is_marked_for_screen_readers(client_a):
    body = client_a.get(LIST, {"category": "NOPE"}).content.decode()
    assert 'aria-invalid="true"' in body and 'aria-describedby="id_category-error"' in body
    assert 'id="id_category-error"' in body


def test_pages_have_landmarks_a_skip_link_and_labels(client_a, report_a):
    for url in (LIST, detail(report_a)):
        body = client_a.get(url).content.decode()
        assert '<a class="skip-link" href="#main">' in body and '<main id="main"' in body
        assert "<header" in body and "<nav" in body and "<footer" in body and "<h1>" in body
    body = client_a.get(LIST).content.decode()
    assert "<caption>" in body and 'label for="id_q"' in body


def test_pagination(client_a, world, settings):
    settings.MIR_PORTAL_PAGE_SIZE = 2
    reports = [delivered_report("authority-a", title=f"Incident {n}") for n in range(3)]
    first = client_a.get(LIST)
    assert len(listed(first)) == 2 and "Next page" in first.content.decode()
    second = client_a.get(LIST, {"page": 2})
    assert listed(second) == [str(reports[0].public_id)]
    assert client_a.get(LIST, {"page": 3}).status_code == 400


def test_the_count_stops_at_a_ceiling(client_a, world, settings, monkeypatch):
    from reporting.portal import pagination, views

    monkeypatch.setattr(pagination, "COUNT_CEILING", 2)
    monkeypatch.setattr(views, "COUNT_CEILING", 2)
    settings.MIR_PORTAL_PAGE_SIZE = 1
    for n in range(4):
        delivered_report("authority-a", title=f"Incident {n}")
    response = client_a.get(LIST)
    assert "More than 2 reports" in response.content.decode()
    assert client_a.get(LIST, {"page": 3}).status_code == 200
    response = client_a.get(LIST, {"page": 4})
    assert response.status_code == 400 and "Narrow the filters" in response.content.decode()


def test_the_list_takes_a_constant_number_of_queries(client_a, world):
    delivered_report("authority-a", title="One")
    with CaptureQueriesContext(connection) as one:
        assert client_a.get(LIST).status_code == 200
    for n in range(12):
        delivered_report("authority-a", title=f"More {n}")
    with CaptureQueriesContext(connection) as many:
        assert len(listed(client_a.get(LIST))) == 13
    assert len(many.captured_queries) == len(one.captured_queries)
    # No query reads the live incident.
    assert not any('"incidents_incident"."title"' in q["sql"] for q in many.captured_queries)


def test_the_detail_takes_a_constant_number_of_queries(client_a, report_a, world):
    with CaptureQueriesContext(connection) as one:
        client_a.get(detail(report_a))
    for stage in Report.objects.filter(incident_id=report_a.incident_id, destination=world.destination_a).exclude(
            pk=report_a.pk):
        deliver(stage)
    with CaptureQueriesContext(connection) as many:
        response = client_a.get(detail(report_a))
    assert response.context["others"]
    assert len(many.captured_queries) == len(one.captured_queries)


def test_the_stix_download_applies_the_destinations_tlp_floor_like_the_taxii_feed(client_a, report_a):
    """The download, the TAXII feed and a TAXII destination mark the objects alike: never looser than the
    destination's TLP, whatever the document carried."""
    Destination.objects.filter(pk=report_a.destination_id).update(tlp="TLP:RED")
    bundle = json.loads(client_a.get(stix(report_a)).content)
    red = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    incident = next(o for o in bundle["objects"] if o["type"] == "incident")
    assert red in incident["object_marking_refs"]
