"""Every bad input a detector can send: a precise 4xx in the problem shape, and nothing stored."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from incidents.models import Account, AuditEvent, Evidence, IdempotencyKey, Incident, Indicator
from tests.conftest import api_client, make_detector, post, valid_body

pytestmark = pytest.mark.django_db


def assert_nothing_stored():
    assert Incident.objects.count() == 0
    assert Evidence.objects.count() == 0 and Indicator.objects.count() == 0 and Account.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0
    assert not AuditEvent.objects.filter(object_type="incidents.incident").exists()


def assert_problem(response, status: int, slug: str, field: str | None = None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:mir:problem:{slug}"
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


FUTURE = (timezone.now() + timedelta(days=1)).isoformat()

INVALID_BODIES = [
    ({"title": None}, "title"),
    ({"title": 123}, "title"),
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"summary": ["list"]}, "summary"),
    ({"category": "MALWARE"}, "category"),
    ({"category": "cyber"}, "category"),
    ({"severity": "SEV-5"}, "severity"),
    ({"severity": 0}, "severity"),
    ({"detected_at": "2026-11-27"}, "detected_at"),
    ({"detected_at": "2026-11-27T10:00:00"}, "detected_at"),
    ({"detected_at": "yesterday"}, "detected_at"),
    ({"detected_at": 1764000000}, "detected_at"),
    ({"detected_at": "2026-13-40T10:00:00Z"}, "detected_at"),
    ({"detected_at": "0001-01-01T00:00:00+14:00"}, "detected_at"),
    ({"detected_at": FUTURE}, "detected_at"),
    ({"model": "Fable 5"}, "model"),
    ({"model": {}}, "model.name"),
    ({"model": {"name": "Fable", "weights": "x"}}, "model.weights"),
    ({"score": 1.5}, "score"),
    ({"score": -0.1}, "score"),
    ({"score": "0.9"}, "score"),
    ({"score": True}, "score"),
    ({"threshold": 2}, "threshold"),
    ({"imminent_risk_to_life": "yes"}, "imminent_risk_to_life"),
    ({"imminent_risk_to_life": 1}, "imminent_risk_to_life"),
    ({"surface": "telepathy"}, "surface"),
    ({"countries": ["XX"]}, "countries"),
    ({"countries": "DE"}, "countries"),
    ({"techniques": ["T99"]}, "techniques[0]"),
    ({"occurred_start": "2026-11-26T10:00:00Z", "occurred_end": "2026-11-26T09:00:00Z"}, "occurred_end"),
    ({"occurred_start": FUTURE}, "occurred_start"),
    ({"accounts": [{"id": ""}]}, "accounts[0].id"),
    ({"accounts": [{"id": "u", "enforcement_action": "shot"}]}, "accounts[0].enforcement_action"),
    ({"accounts": [{"identifier": "u"}]}, "accounts[0].identifier"),
    ({"indicators": [{"type": "ip", "value": "999.1.1.1"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "domain", "value": "not a domain"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "url", "value": "javascript:alert(1)"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "email", "value": "nobody"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "wallet", "value": "0x123"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "file_hash", "value": "abc"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "prompt_pattern_hash", "value": "d41d8cd98f00b204e9800998ecf8427e"}]}, "indicators[0].value"),
    ({"indicators": [{"type": "registry_key", "value": "x"}]}, "indicators[0].type"),
    ({"evidence": [{"kind": "prompt", "description": "no content"}]}, "evidence[0]"),
    ({"evidence": [{"kind": "prompt", "description": "d", "sha256": "zz" * 32}]}, "evidence[0].sha256"),
    ({"evidence": [{"kind": "prompt", "description": "d", "content": "abc", "sha256": "0" * 64}]}, "evidence[0]"),
    ({"evidence": [{"kind": "video", "description": "d", "content": "x"}]}, "evidence[0].kind"),
    ({"status": "closed"}, "status"),
    ({"reportability": "not_reportable"}, "reportability"),
    ({"determined_at": "2026-11-26T10:00:00Z"}, "determined_at"),
    ({"occurrence_count": 5}, "occurrence_count"),
]


@pytest.mark.parametrize(("overrides", "field"), INVALID_BODIES, ids=[f for _, f in INVALID_BODIES])
def test_invalid_field_is_422_naming_the_field_and_stores_nothing(api_a, overrides, field):
    response = post(api_a, valid_body(**overrides))
    assert_problem(response, 422, "validation-error", field)
    assert_nothing_stored()


@pytest.mark.parametrize("missing", ["title", "summary", "category", "severity", "detected_at", "model"])
def test_missing_required_field_is_422(api_a, missing):
    body = valid_body()
    del body[missing]
    assert_problem(post(api_a, body), 422, "validation-error", missing)
    assert_nothing_stored()


def test_several_errors_are_reported_together(api_a):
    body = assert_problem(post(api_a, valid_body(title=5, status="closed", score=3)), 422, "validation-error")
    assert {e["field"] for e in body["errors"]} >= {"title", "status", "score"}


@override_settings(MIR_EVIDENCE_MAX_CONTENT_BYTES=10)
def test_evidence_over_cap_is_422(api_a):
    response = post(api_a, valid_body(evidence=[{"kind": "prompt", "description": "d", "content": "x" * 11}]))
    assert_problem(response, 422, "validation-error", "evidence[0].content")
    assert_nothing_stored()


RAW_BODIES = [
    (b'{"title": ', "malformed-request"),
    (b"not json at all", "malformed-request"),
    (b'{"title": NaN}', "malformed-request"),
    (b'{"score": Infinity}', "malformed-request"),
    (b'{"title": "a", "title": "b"}', "malformed-request"),
    (b'{"title": "\\u0000"}', "malformed-request"),
    (b'{"title": "\\ud800"}', "malformed-request"),
    (b"\xff\xfe{}", "malformed-request"),
    (b"[" * 5000 + b"]" * 5000, "malformed-request"),
    (b'{"a":' * 20 + b"1" + b"}" * 20, "malformed-request"),
]


@pytest.mark.parametrize(("raw", "slug"), RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_malformed_json_is_400(api_a, raw, slug):
    response = api_a.post("/api/v1/incidents/", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert_problem(response, 400, slug)
    assert_nothing_stored()


@pytest.mark.parametrize("raw", [b"[]", b'"string"', b"42", b"null"])
def test_body_that_is_not_an_object_is_422(api_a, raw):
    response = api_a.post("/api/v1/incidents/", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert_problem(response, 422, "validation-error")
    assert_nothing_stored()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
)
def test_wrong_content_type_is_415(api_a, content_type):
    response = api_a.generic(
        "POST", "/api/v1/incidents/", b'{"title": "x"}', content_type=content_type, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 415, "unsupported-media-type")
    assert_nothing_stored()


def test_non_utf8_charset_is_400(api_a):
    response = api_a.generic(
        "POST", "/api/v1/incidents/", b"{}", content_type="application/json; charset=latin-1", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 400, "malformed-request")


@override_settings(MIR_API_MAX_BODY_BYTES=2048)
def test_body_over_cap_is_413(api_a):
    response = post(api_a, valid_body(summary="x" * 4000))
    body = assert_problem(response, 413, "payload-too-large")
    assert "2048" in body["detail"]
    assert_nothing_stored()


def test_body_without_content_length_is_read_as_empty(api_a):
    """Django's WSGI layer reads no body without Content-Length (chunked uploads): a 422, never a 5xx."""
    import json

    raw = json.dumps(valid_body()).encode()
    response = api_a.generic(
        "POST", "/api/v1/incidents/", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k",
        CONTENT_LENGTH="",
    )
    assert_problem(response, 422, "validation-error", "title")
    assert_nothing_stored()


def test_missing_idempotency_key_is_400(api_a):
    assert_problem(post(api_a, valid_body(), key=None), 400, "idempotency-key-missing")
    assert_nothing_stored()


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "a#b", "é"])
def test_bad_idempotency_key_is_400(api_a, key):
    assert_problem(post(api_a, valid_body(), key=key), 400, "idempotency-key-missing")
    assert_nothing_stored()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer mir_wrong", "Token abc", "Bearer a b", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 500],
)
def test_missing_or_bad_token_is_401(db, header):
    make_detector("someone")
    client = api_client(None)
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = post(client, valid_body(), **extra)
    body = assert_problem(response, 401, "not-authenticated" if header is None else "invalid-token")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert body["detail"]
    assert Incident.objects.count() == 0


def test_expired_token_is_401(db):
    from incidents.models import DetectorToken

    _, secret = make_detector("old", expires_at=timezone.now() + timedelta(minutes=1))
    DetectorToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_problem(post(api_client(secret), valid_body()), 401, "invalid-token")


def test_revoked_token_is_401(db, staff_actor):
    from incidents.models import DetectorToken
    from incidents.services.detectors import detector_token_revoke

    _, secret = make_detector("revoked")
    token = DetectorToken.objects.get()
    detector_token_revoke(actor=staff_actor, token=token, reason="leaked")
    assert_problem(post(api_client(secret), valid_body()), 401, "invalid-token")
    assert AuditEvent.objects.filter(action="token_revoked", actor_user=staff_actor.user, reason="leaked").exists()


def test_inactive_detector_is_401(db):
    detector, secret = make_detector("off")
    detector.is_active = False
    detector.save()
    assert_problem(post(api_client(secret), valid_body()), 401, "invalid-token")


def test_read_only_token_cannot_submit_403(db):
    _, secret = make_detector("reader", scopes=["incidents:read"])
    body = assert_problem(post(api_client(secret), valid_body()), 403, "forbidden")
    assert "incidents:submit" in body["detail"]
    assert_nothing_stored()


def test_submit_only_token_cannot_read_403(db, api_a):
    created = post(api_a, valid_body()).json()
    _, secret = make_detector("writer", scopes=["incidents:submit"])
    assert_problem(api_client(secret).get(created["url"]), 403, "forbidden")


def test_staff_session_is_not_a_detector(staff_client):
    response = staff_client.post("/api/v1/incidents/", valid_body(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_on_collection_are_405(api_a, method):
    response = getattr(api_a, method)("/api/v1/incidents/")
    assert_problem(response, 405, "method-not-allowed")


def test_rate_limit_is_429_with_retry_after(db):
    detector, secret = make_detector("noisy")
    detector.rate_limit_per_minute = 3
    detector.save()
    client = api_client(secret)
    codes = [post(client, valid_body(), key=f"k{i}").status_code for i in range(3)]
    assert codes == [201, 201, 201]
    response = post(client, valid_body(), key="k3")
    assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Incident.objects.count() == 3


def test_rate_limit_is_per_detector(db):
    noisy, noisy_secret = make_detector("noisy")
    noisy.rate_limit_per_minute = 1
    noisy.save()
    _, quiet_secret = make_detector("quiet")
    assert post(api_client(noisy_secret), valid_body(), key="a").status_code == 201
    assert post(api_client(noisy_secret), valid_body(), key="b").status_code == 429
    assert post(api_client(quiet_secret), valid_body(), key="c").status_code == 201
