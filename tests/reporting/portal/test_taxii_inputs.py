"""TAXII 2.1 guard paths: every bad input is a 4xx TAXII error message, nothing is served or logged."""
from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from reporting.portal.models import ReviewerAccess
from tests.reporting.portal.conftest import delivered_report
from tests.reporting.portal.feed_helpers import issue_token

TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def taxii_a(world):
    client = APIClient()
    # No Accept header by default (allowed); test_accept_header sends its own.
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(world.reviewer_a.reviewer).secret}")
    return client


@pytest.fixture
def collection_a(world):
    return f"/taxii2/reports/collections/{world.reviewer_a.reviewer.authority.public_id}/"


def assert_taxii_error(response, status: int) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == TAXII
    body = response.json()
    assert body["http_status"] == str(status) and body["title"] and "description" in body


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"limit": "-5"}, {"limit": "1.5"},
    {"added_after": "yesterday"}, {"added_after": "2026-01-01"}, {"added_after": "2026-01-01T00:00:00"},
    {"added_after": "2026-13-01T00:00:00Z"}, {"added_after": "0001-01-01T00:00:00Z"},
    {"next": "garbage"}, {"next": "eyJhIjoxfQ:1tampered:signature"},
    {"match[id]": "not-an-id"}, {"match[id]": "indicator--1234"}, {"match[type]": "Bad Type"},
    {"match[version]": "newest"}, {"match[spec_version]": "two"}, {"match[unknown]": "x"}, {"page": "2"},
    {"added_after": "2026-01-01T00:00:00Z\x00"},
])
def test_bad_query_parameters_are_400(taxii_a, collection_a, params):
    delivered_report("authority-a")
    for endpoint in ("objects/", "manifest/"):
        assert_taxii_error(taxii_a.get(collection_a + endpoint, params), 400)
    assert not ReviewerAccess.objects.exclude(action="taxii_directory").exists()


def test_a_repeated_parameter_is_400(taxii_a, collection_a):
    response = taxii_a.get(collection_a + "objects/?limit=1&limit=2")
    assert_taxii_error(response, 400)


def test_next_from_another_endpoint_position_still_reads(taxii_a, collection_a):
    delivered_report("authority-a")
    first = taxii_a.get(collection_a + "objects/", {"limit": 1}).json()
    response = taxii_a.get(collection_a + "manifest/", {"limit": 1, "next": first["next"]})
    assert response.status_code == 200  # a position, not a session: any endpoint can continue from it


@pytest.mark.parametrize("object_id, status", [
    ("not-a-stix-id", 400), ("report--not-a-uuid", 400), ("x" * 300, 400),
    ("report--00000000-0000-4000-8000-000000000000", 404),
])
def test_bad_or_unknown_object_ids(taxii_a, collection_a, object_id, status):
    delivered_report("authority-a")
    assert_taxii_error(taxii_a.get(f"{collection_a}objects/{object_id}/"), status)
    assert_taxii_error(taxii_a.get(f"{collection_a}objects/{object_id}/versions/"), status)


@pytest.mark.parametrize("path", [
    "/taxii2/reports/collections/not-a-uuid/", "/taxii2/reports/collections/not-a-uuid/objects/",
    "/taxii2/reports/collections/00000000-0000-4000-8000-000000000000/manifest/",
    "/taxii2/other-root/", "/taxii2/reports/status/00000000-0000-4000-8000-000000000000/",
])
def test_unknown_collections_and_paths_are_404(taxii_a, path):
    assert_taxii_error(taxii_a.get(path), 404)


def test_another_authoritys_collection_is_404_like_a_missing_one(world, taxii_a):
    delivered_report("authority-b")
    other = f"/taxii2/reports/collections/{world.reviewer_b.reviewer.authority.public_id}/"
    for suffix in ("", "objects/", "manifest/"):
        assert_taxii_error(taxii_a.get(other + suffix), 404)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_writes_are_405(taxii_a, collection_a, method):
    for path in ("/taxii2/", "/taxii2/reports/", collection_a, collection_a + "objects/", collection_a + "manifest/"):
        response = getattr(taxii_a, method)(path, {"objects": []}, format="json")
        assert_taxii_error(response, 405)


@pytest.mark.parametrize("accept, status", [
    ("application/json", 406), ("application/taxii+json;version=2.0", 406), ("text/html", 406),
    ("application/taxii+json", 200), ("*/*", 200), ("application/taxii+json;version=2.1;q=0.9", 200),
])
def test_accept_header(taxii_a, accept, status):
    response = taxii_a.get("/taxii2/", HTTP_ACCEPT=accept)
    assert response.status_code == status
    assert response["Content-Type"] == TAXII


def test_anonymous_is_401_with_a_challenge(world):
    response = APIClient().get("/taxii2/", HTTP_ACCEPT=TAXII)
    assert_taxii_error(response, 401)
    assert "Basic" in response["WWW-Authenticate"]


@override_settings(MIR_REVIEWER_RATE_PER_MINUTE=1)
def test_rate_limited_as_a_taxii_error(taxii_a):
    assert taxii_a.get("/taxii2/").status_code == 200
    response = taxii_a.get("/taxii2/")
    assert_taxii_error(response, 429)
    assert int(response["Retry-After"]) >= 1


def test_empty_collection_and_empty_added_after(taxii_a, collection_a):
    response = taxii_a.get(collection_a + "objects/")
    assert response.status_code == 200 and response.json() == {"more": False}
    assert "X-TAXII-Date-Added-First" not in response
    assert ReviewerAccess.objects.filter(action="taxii_objects", report__isnull=True).count() == 1


def test_objects_queries_do_not_grow_with_reports(taxii_a, collection_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        taxii_a.get(collection_a + "objects/")  # maps new reports once (cached afterwards)
        with CaptureQueriesContext(connection) as captured:
            assert taxii_a.get(collection_a + "objects/").status_code == 200
        return len(captured)

    delivered_report("authority-a", title="One")
    small = count()
    for n in range(4):
        delivered_report("authority-a", title=f"More {n}")
    assert count() == small
