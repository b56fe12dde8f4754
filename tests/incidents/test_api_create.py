"""POST /api/v1/incidents/: the happy paths and what a detector gets back."""
from __future__ import annotations

import hashlib

import pytest

from incidents.choices import ActorKind, DetectionSource, Status
from incidents.models import AuditEvent, Evidence, Incident
from tests.conftest import post, valid_body

pytestmark = pytest.mark.django_db


def test_minimum_body_creates_incident_and_answers_with_ids(api_a, detector_a):
    response = post(api_a, valid_body())
    assert response.status_code == 201, response.content
    body = response.json()
    incident = Incident.objects.get(public_id=body["id"])
    assert body["reference"] == incident.reference
    assert body["status"] == "new" and body["grouped"] is False and body["occurrence_count"] == 1
    assert response["Location"] == f"/api/v1/incidents/{incident.public_id}"
    assert incident.detector == detector_a[0]
    assert incident.detection_source == DetectionSource.DETECTOR
    assert incident.status == Status.NEW
    assert incident.model_name == "Fable 5" and incident.model_version == "2026-10"
    event = AuditEvent.objects.get(incident=incident)
    assert event.action == "created"
    assert event.actor_kind == ActorKind.DETECTOR and event.actor_detector == detector_a[0]


def test_full_body_stores_every_part_normalised(api_a):
    content = "Write me a phishing page for Example Bank"
    body = valid_body(
        fingerprint="cluster-17",
        score=0.97,
        threshold=0.8,
        detector_version="phish-clf 4.2",
        occurred_start="2026-11-26T10:00:00+02:00",
        occurred_end="2026-11-26T11:00:00Z",
        surface="api",
        imminent_risk_to_life=False,
        countries=["de", "FR", "DE"],
        techniques=["AML.T0054", "T1566.002"],
        accounts=[{"id": "user-123", "enforcement_action": "banned"}, {"id": "user-456"}],
        indicators=[
            {"type": "domain", "value": "Examp1e-Bank.COM."},
            {"type": "ip", "value": "2001:0db8:0000:0000:0000:0000:0000:0001"},
            {"type": "url", "value": "HTTPS://Examp1e-Bank.com/Login"},
            {"type": "email", "value": "Ops@Examp1e-Bank.COM"},
            {"type": "wallet", "value": "0x52908400098527886E0F7030069857D2E4169EE7"},
            {"type": "file_hash", "value": "D41D8CD98F00B204E9800998ECF8427E"},
            {"type": "prompt_pattern_hash", "value": "a" * 64},
        ],
        evidence=[
            {"kind": "prompt", "description": "first prompt", "content": content},
            {"kind": "file", "description": "kit archive", "sha256": "B" * 64},
        ],
    )
    response = post(api_a, body)
    assert response.status_code == 201, response.content
    incident = Incident.objects.get(public_id=response.json()["id"])
    assert incident.countries == ["DE", "FR"]
    assert incident.techniques == ["AML.T0054", "T1566.002"]
    assert incident.score == 0.97 and incident.threshold == 0.8
    assert incident.occurred_start.isoformat() == "2026-11-26T08:00:00+00:00"
    assert incident.fingerprint == "cluster-17"
    assert {(a.identifier, a.enforcement_action) for a in incident.accounts.all()} == {
        ("user-123", "banned"), ("user-456", "none"),
    }
    assert set(incident.indicators.values_list("type", "value")) == {
        ("domain", "examp1e-bank.com"),
        ("ip", "2001:db8::1"),
        ("url", "https://examp1e-bank.com/Login"),
        ("email", "Ops@examp1e-bank.com"),
        ("wallet", "0x52908400098527886e0f7030069857d2e4169ee7"),
        ("file_hash", "d41d8cd98f00b204e9800998ecf8427e"),
        ("prompt_pattern_hash", "a" * 64),
    }
    prompt = Evidence.objects.get(incident=incident, kind="prompt")
    assert prompt.sha256 == hashlib.sha256(content.encode()).hexdigest()
    assert prompt.content == content and prompt.size_bytes == len(content)
    digest_only = Evidence.objects.get(incident=incident, kind="file")
    assert digest_only.sha256 == "b" * 64 and digest_only.content == "" and digest_only.size_bytes is None


def test_evidence_with_matching_content_and_digest_is_accepted(api_a):
    digest = hashlib.sha256(b"abc").hexdigest()
    response = post(api_a, valid_body(evidence=[{"kind": "output", "description": "d", "content": "abc", "sha256": digest}]))
    assert response.status_code == 201


def test_duplicate_parts_in_one_body_are_folded(api_a):
    response = post(
        api_a,
        valid_body(
            indicators=[{"type": "domain", "value": "a.example"}, {"type": "domain", "value": "A.EXAMPLE"}],
            accounts=[{"id": "u1"}, {"id": "u1", "enforcement_action": "warned"}],
            evidence=[{"kind": "prompt", "description": "x", "content": "same"}] * 2,
        ),
    )
    assert response.status_code == 201
    incident = Incident.objects.get(public_id=response.json()["id"])
    assert incident.indicators.count() == 1 and incident.accounts.count() == 1 and incident.evidence.count() == 1


def test_detector_reads_its_own_incident(api_a):
    created = post(api_a, valid_body(fingerprint="fp")).json()
    response = api_a.get(created["url"])
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created["id"] and body["status"] == "new"
    assert body["reportability"] == "pending" and body["fingerprint"] == "fp"
    assert "accounts" not in body and "summary" not in body


def test_another_detectors_incident_is_404(api_a, api_b):
    created = post(api_a, valid_body()).json()
    response = api_b.get(created["url"])
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/api/v1/incidents/not-a-uuid", "/api/v1/incidents/00000000-0000-0000-0000-000000000000"])
def test_unknown_incident_is_404(api_a, path):
    response = api_a.get(path)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:mir:problem:not-found"


def test_unknown_api_url_answers_problem_json(api_a):
    response = api_a.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_the_api_files_an_incident_without_a_savepoint_of_its_own(api_a):
    """The view's transaction ends with any error, so incident_create adds no SAVEPOINT/RELEASE there
    (two round trips per incident); the admin, which shows errors on its form, keeps the savepoint."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = post(api_a, valid_body())
    assert response.status_code == 201
    savepoints = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT")]
    # In a test everything runs inside the test's transaction: one savepoint for the view's (the
    # idempotency claim's too); none inside incident_create.
    assert len(savepoints) == 1, savepoints
