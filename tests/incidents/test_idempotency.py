"""Idempotency-Key: replays, mismatches, in-flight conflicts, crashed requests, real concurrency."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from incidents.models import AuditEvent, IdempotencyKey, Incident
from incidents.services.idempotency import (
    ClaimResult,
    LostClaimError,
    idempotency_claim,
    idempotency_complete,
    idempotency_keys_purge,
)
from tests.conftest import api_client, post, valid_body


@pytest.mark.django_db
def test_same_key_and_body_replays_first_response(api_a):
    body = valid_body()
    first = post(api_a, body, key="retry-me")
    second = post(api_a, body, key="retry-me")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Incident.objects.count() == 1
    assert AuditEvent.objects.filter(action="created").count() == 1


@pytest.mark.django_db
def test_key_order_and_whitespace_do_not_change_the_fingerprint(api_a):
    import json

    body = valid_body()
    post(api_a, body, key="k")
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    response = api_a.post("/api/v1/incidents/", reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 201 and response["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_same_key_different_body_is_422(api_a):
    post(api_a, valid_body(title="first"), key="k")
    response = post(api_a, valid_body(title="second"), key="k")
    assert response.status_code == 422
    assert response.json()["type"] == "urn:mir:problem:idempotency-key-reused"
    assert Incident.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_detector(api_a, api_b):
    assert post(api_a, valid_body(), key="shared").status_code == 201
    assert post(api_b, valid_body(), key="shared").status_code == 201
    assert Incident.objects.count() == 2


@pytest.mark.django_db
def test_rejected_request_releases_its_key(api_a):
    assert post(api_a, valid_body(category="NOPE"), key="k").status_code == 422
    assert post(api_a, valid_body(), key="k").status_code == 201


@pytest.mark.django_db
def test_key_in_flight_is_409_with_retry_after(api_a, detector_a):
    body = valid_body()
    from incidents.api.idempotency import request_fingerprint

    idempotency_claim(detector=detector_a[0], key="busy", fingerprint=request_fingerprint("incidents", body))
    response = post(api_a, body, key="busy")
    assert response.status_code == 409
    assert response.json()["type"] == "urn:mir:problem:idempotency-key-in-flight"
    assert response["Retry-After"] == "1"
    assert Incident.objects.count() == 0


@pytest.mark.django_db
def test_claim_of_a_crashed_request_is_taken_over_after_its_lease(api_a, detector_a):
    from incidents.api.idempotency import request_fingerprint

    body = valid_body()
    claim = idempotency_claim(detector=detector_a[0], key="crashed", fingerprint=request_fingerprint("incidents", body))
    IdempotencyKey.objects.filter(pk=claim.record.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    response = post(api_a, body, key="crashed")
    assert response.status_code == 201
    assert Incident.objects.count() == 1


@pytest.mark.django_db
def test_a_request_that_lost_its_claim_cannot_commit(detector_a):
    from django.db import transaction

    stale = idempotency_claim(detector=detector_a[0], key="slow", fingerprint="f").record
    IdempotencyKey.objects.filter(pk=stale.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taker = idempotency_claim(detector=detector_a[0], key="slow", fingerprint="f")
    assert taker.result is ClaimResult.CLAIMED
    with pytest.raises(LostClaimError), transaction.atomic():
        idempotency_complete(record=stale, status=201, body={})


@pytest.mark.django_db
def test_expired_key_is_a_new_key(api_a):
    post(api_a, valid_body(title="old"), key="reused")
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = post(api_a, valid_body(title="new"), key="reused")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    assert Incident.objects.count() == 2


@pytest.mark.django_db
def test_keys_are_kept_at_least_a_day_and_purged_after_expiry(api_a):
    post(api_a, valid_body(), key="a")
    post(api_a, valid_body(), key="b")
    record = IdempotencyKey.objects.get(key="a")
    assert record.expires_at - record.created_at >= timedelta(hours=24)
    IdempotencyKey.objects.filter(key="a").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["b"]


def test_ttl_setting_cannot_go_below_a_day(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from reporting.env import env_int

    monkeypatch.setenv("MIR_IDEMPOTENCY_TTL_SECONDS", "60")
    with pytest.raises(ImproperlyConfigured, match="MIR_IDEMPOTENCY_TTL_SECONDS"):
        env_int("MIR_IDEMPOTENCY_TTL_SECONDS", 172800, minimum=86400)


def _concurrently(n: int, work) -> list:
    """Run `work` in n threads released at the same instant; each thread has its own DB connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(MIR_DETECTOR_RATE_PER_MINUTE=10_000)
def test_concurrent_requests_with_one_key_create_one_incident(detector_a):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    body = valid_body()
    secret = detector_a[1]
    codes = _concurrently(12, lambda i: post(api_client(secret), body, key="same").status_code)
    assert Incident.objects.count() == 1
    assert codes.count(201) >= 1
    assert set(codes) <= {201, 409}
    # After the dust settles every retry is a replay of the one incident.
    replay = post(api_client(secret), body, key="same")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(MIR_DETECTOR_RATE_PER_MINUTE=10_000)
def test_concurrent_distinct_keys_all_succeed(detector_a):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    secret = detector_a[1]
    codes = _concurrently(10, lambda i: post(api_client(secret), valid_body(title=f"t{i}"), key=f"k{i}").status_code)
    assert codes == [201] * 10
    assert Incident.objects.count() == 10
