"""The reviewer API: the portal's scope, filters and downloads for machines; logged; read-only; strict."""
from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from django.test import override_settings

from reporting.portal.models import AccessChannel, ReviewerAccess
from tests.reporting.portal.conftest import delivered_report, pending_report_a
from tests.reporting.portal.feed_helpers import bearer, issue_token

BASE = "/api/v1/reviewer/reports/"


@pytest.fixture
def api_reviewer_a(world):
    return bearer(issue_token(world.reviewer_a.reviewer).secret)


@pytest.fixture
def api_reviewer_b(world):
    return bearer(issue_token(world.reviewer_b.reviewer).secret)


def test_list_shows_only_the_authoritys_delivered_reports(world, api_reviewer_a, report_a, report_b):
    pending = pending_report_a(world)
    response = api_reviewer_a.get(BASE)
    assert response.status_code == 200
    ids = [item["id"] for item in response.json()["results"]]
    assert ids == [str(report_a.public_id)]
    assert str(report_b.public_id) not in ids and str(pending.public_id) not in ids
    item = response.json()["results"][0]
    assert item["sha256"] == report_a.payload_sha256
    assert item["title"] == report_a.sent_title and item["stage"] == "early_notice"
    access = ReviewerAccess.objects.get(action="list")
    assert access.channel == AccessChannel.API and access.token is not None


def test_detail_document_and_stix(api_reviewer_a, report_a):
    detail = api_reviewer_a.get(f"{BASE}{report_a.public_id}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["signature"]["state"] == "valid" and body["signature"]["digest_matches"] is True
    assert body["attempts"][0]["outcome"] == "delivered"
    assert body["receipt"] == {"status": "accepted", "receipt_id": "r-1"}

    document = api_reviewer_a.get(body["document_url"])
    assert document.status_code == 200 and document["Content-Type"] == "application/json"
    assert hashlib.sha256(document.content).hexdigest() == report_a.payload_sha256 == body["sha256"]
    assert document.content == report_a.payload.encode("utf-8")

    stix = api_reviewer_a.get(body["stix_url"])
    assert stix.status_code == 200 and stix["Content-Type"].startswith("application/stix+json")
    bundle = json.loads(stix.content)
    assert bundle["type"] == "bundle" and any(obj["type"] == "report" for obj in bundle["objects"])

    actions = list(ReviewerAccess.objects.order_by("id").values_list("action", "report_id", "channel"))
    assert actions == [("detail", report_a.pk, "api"), ("download_json", report_a.pk, "api"),
                       ("download_stix", report_a.pk, "api")]


def test_out_of_scope_is_404_and_unlogged(world, api_reviewer_b, report_a):
    pending = pending_report_a(world)
    for target in (report_a, pending):
        for suffix in ("", "document", "stix"):
            response = api_reviewer_b.get(f"{BASE}{target.public_id}/{suffix}")
            assert response.status_code == 404, suffix
            assert response["Content-Type"] == "application/problem+json"
    assert api_reviewer_b.get(f"{BASE}{uuid.uuid4()}/").status_code == 404
    assert api_reviewer_b.get(f"{BASE}not-a-uuid/").status_code == 404
    assert not ReviewerAccess.objects.exclude(action="list").exists()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_read_only(api_reviewer_a, report_a, method):
    for path in (BASE, f"{BASE}{report_a.public_id}/", f"{BASE}{report_a.public_id}/document",
                 f"{BASE}{report_a.public_id}/stix"):
        response = getattr(api_reviewer_a, method)(path, {}, format="json")
        assert response.status_code == 405, (method, path)
        assert response["Content-Type"] == "application/problem+json"


def test_filters_match_the_portal(world, api_reviewer_a):
    fraud = delivered_report("authority-a", title="Phishing kit", category="FRAUD")
    cyber = delivered_report("authority-a", title="Intrusion kit", category="CYBER")
    ids = lambda response: [item["id"] for item in response.json()["results"]]  # noqa: E731
    assert ids(api_reviewer_a.get(BASE, {"category": "FRAUD"})) == [str(fraud.public_id)]
    assert ids(api_reviewer_a.get(BASE, {"q": "intrusion"})) == [str(cyber.public_id)]
    assert ids(api_reviewer_a.get(BASE, {"stage": "initial"})) == [str(cyber.public_id), str(fraud.public_id)]
    assert ids(api_reviewer_a.get(BASE, {"delivered_to": "1999-01-01"})) == []


def test_cursor_pagination_walks_every_report_once(world, api_reviewer_a):
    made = {str(delivered_report("authority-a", title=f"Report {n}").public_id) for n in range(5)}
    seen, url, pages = [], f"{BASE}?limit=2", 0
    while url:
        response = api_reviewer_a.get(url)
        assert response.status_code == 200
        seen += [item["id"] for item in response.json()["results"]]
        url, pages = response.json()["next"], pages + 1
    assert sorted(seen) == sorted(made) and len(seen) == 5 and pages == 3


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "-1"}, {"limit": "١"},
    {"cursor": "garbage"}, {"cursor": "cD1ub3QtYS10aW1l"},  # base64 of "p=not-a-time"
    {"category": "NOPE"}, {"severity": "SEV-9"}, {"stage": "middle"}, {"delivered_from": "2026-13-01"},
    {"delivered_from": "2026-02-01", "delivered_to": "2026-01-01"}, {"q": "a\x00b"}, {"q": "x" * 201},
    {"unknown": "1"}, {"page": "0"}, {"delivered_to": ""}, {"category": ""}, {"limit": ""},
    {"category": ["CYBER", "FRAUD"]},
])
def test_bad_queries_are_400_problems(api_reviewer_a, report_a, query):
    response = api_reviewer_a.get(BASE, query)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["type"] == "urn:mir:problem:bad-query" and body["detail"]
    assert not ReviewerAccess.objects.exists()


@override_settings(MIR_REVIEWER_RATE_PER_MINUTE=2)
def test_throttled_with_retry_after(api_reviewer_a):
    assert api_reviewer_a.get(BASE).status_code == 200
    assert api_reviewer_a.get(BASE).status_code == 200
    response = api_reviewer_a.get(BASE)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["type"] == "urn:mir:problem:rate-limited"


def test_scope_is_required(world, report_a):
    from reporting.portal.models import ReviewerToken

    issued = issue_token(world.reviewer_a.reviewer)
    ReviewerToken.objects.filter(pk=issued.token.pk).update(scopes=[])
    response = bearer(issued.secret).get(BASE)
    assert response.status_code == 403


def test_basic_auth_with_the_reviewers_username(world, report_a):
    from rest_framework.test import APIClient

    secret = issue_token(world.reviewer_a.reviewer).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + _b64(f"reviewer_a:{secret}"))
    assert client.get(BASE).status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Basic " + _b64(f"reviewer_b:{secret}"))
    assert client.get(BASE).status_code == 401


def test_openapi_documents_the_reviewer_api(staff_user):
    from rest_framework.test import APIClient

    client = APIClient()
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    schema = json.loads(response.content) if response["Content-Type"].startswith("application/json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    for path in ("/api/v1/reviewer/reports/", "/api/v1/reviewer/reports/{public_id}/",
                 "/api/v1/reviewer/reports/{public_id}/document", "/api/v1/reviewer/reports/{public_id}/stix"):
        assert set(paths[path]) == {"get"}, path
    assert "reviewerToken" in schema["components"]["securitySchemes"]
    assert not any(path.startswith("/taxii2") for path in paths)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_list_and_detail_queries_do_not_grow_with_reports(world, api_reviewer_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api_reviewer_a.get(path).status_code == 200
        return len(captured)

    first = delivered_report("authority-a", title="One")
    api_reviewer_a.get(BASE)  # the token's last_used_at is written on first use only
    small_list, small_detail = count(BASE), count(f"{BASE}{first.public_id}/")
    for n in range(4):
        delivered_report("authority-a", title=f"More {n}")
    assert count(BASE) == small_list
    assert count(f"{BASE}{first.public_id}/") == small_detail
