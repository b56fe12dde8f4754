"""POST /api/v1/incidents/batch: one result per item, one bad item sinks nothing, retries are safe."""
from __future__ import annotations

import pytest
from django.test import override_settings

from incidents.models import IdempotencyKey, Incident
from tests.conftest import post, valid_body

pytestmark = pytest.mark.django_db
BATCH = "/api/v1/incidents/batch"


def test_mixed_batch_reports_each_item(api_a):
    items = [valid_body(title="ok-1"), {"title": "broken"}, 7, valid_body(title="ok-2", fingerprint="g"),
             valid_body(title="ok-3", fingerprint="g"), valid_body(indicators=[{"type": "ip", "value": "nope"}])]
    response = post(api_a, {"items": items}, key="batch-1", path=BATCH)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["index"] for r in body["items"]] == list(range(6))
    assert [r["status"] for r in body["items"]] == [201, 422, 422, 201, 200, 422]
    assert body["created"] == 2 and body["grouped"] == 1 and body["failed"] == 3
    assert body["items"][1]["problem"]["type"] == "urn:mir:problem:validation-error"
    assert "summary" in [e["field"] for e in body["items"][1]["problem"]["errors"]]
    assert body["items"][5]["problem"]["errors"][0]["field"] == "indicators[0].value"
    assert body["items"][4]["result"]["id"] == body["items"][3]["result"]["id"]
    assert Incident.objects.count() == 2


def test_batch_replay_returns_the_same_results_without_new_rows(api_a):
    payload = {"items": [valid_body(title="a"), valid_body(title="b")]}
    first = post(api_a, payload, key="b", path=BATCH)
    second = post(api_a, payload, key="b", path=BATCH)
    assert second.json() == first.json() and second["Idempotent-Replayed"] == "true"
    assert Incident.objects.count() == 2


def test_batch_retried_after_a_crash_does_not_duplicate_committed_items(api_a, detector_a):
    """Items commit one by one; if the process dies mid-batch, the retry replays what was committed."""
    payload = {"items": [valid_body(title="a"), valid_body(title="b")]}
    post(api_a, payload, key="crash", path=BATCH)
    # Simulate the crash after the items committed: the batch's own answer was never stored (its
    # lock went with the dead connection).
    IdempotencyKey.objects.filter(key="crash").delete()
    assert IdempotencyKey.objects.filter(key__startswith="crash#").count() == 2
    retry = post(api_a, payload, key="crash", path=BATCH)
    assert retry.status_code == 200
    assert [r["status"] for r in retry.json()["items"]] == [201, 201]
    assert Incident.objects.count() == 2


@override_settings(MIR_API_MAX_BATCH_ITEMS=3)
def test_batch_over_the_item_cap_is_422(api_a):
    response = post(api_a, {"items": [valid_body()] * 4}, path=BATCH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "items"
    assert Incident.objects.count() == 0


@pytest.mark.parametrize("payload", [{"items": []}, {"items": "x"}, {}, {"items": [], "extra": 1}, []])
def test_bad_batch_envelope_is_422(api_a, payload):
    response = post(api_a, payload, path=BATCH)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert IdempotencyKey.objects.count() == 0


def test_batch_needs_idempotency_key(api_a):
    response = post(api_a, {"items": [valid_body()]}, key=None, path=BATCH)
    assert response.status_code == 400
    assert Incident.objects.count() == 0
