"""Idempotency-Key: replays, mismatches, in-flight conflicts, failed requests, races, real concurrency."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
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
from tests.conftest import api_client, key_held_elsewhere, post, valid_body


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


@pytest.mark.postgres
@pytest.mark.django_db
def test_key_in_flight_is_409_with_retry_after(api_a, detector_a):
    body = valid_body()
    with key_held_elsewhere(detector_a[0], "busy", _fingerprint(body)):
        response = post(api_a, body, key="busy")
        assert response.status_code == 409
        assert response.json()["type"] == "urn:mir:problem:idempotency-key-in-flight"
        assert response["Retry-After"] == "1"
        # Another key of the same detector is not held up.
        assert post(api_a, valid_body(), key="other").status_code == 201
    assert Incident.objects.count() == 1
    # The other request ended without storing anything (rolled back): the key is free.
    assert post(api_a, body, key="busy").status_code == 201
    assert Incident.objects.count() == 2


@pytest.mark.django_db
def test_a_request_that_fails_leaves_no_trace_of_its_key(api_a, detector_a, monkeypatch):
    from incidents.api import filing

    def crash(detector, validated):  # noqa: ANN001, ANN202
        raise RuntimeError("the process died here")

    body = valid_body()
    monkeypatch.setattr(filing, "submit", crash)
    with pytest.raises(RuntimeError):
        filing.incident_accept(detector=detector_a[0], key="dies", fingerprint="f", validated=body)
    assert not IdempotencyKey.objects.exists()
    monkeypatch.undo()
    assert post(api_a, body, key="dies").status_code == 201


@pytest.mark.django_db
def test_claim_of_the_earlier_protocol_is_in_flight_until_its_lease_runs_out(api_a, detector_a):
    """Rows written before the claim moved into the work's transaction: an in-flight claim with a lease."""
    body = valid_body()
    legacy = IdempotencyKey.objects.create(
        detector=detector_a[0], key="crashed", request_fingerprint=_fingerprint(body),
        state=IdempotencyKey.State.IN_FLIGHT, lease_expires_at=timezone.now() + timedelta(minutes=5),
        expires_at=timezone.now() + timedelta(days=2),
    )
    assert post(api_a, body, key="crashed").status_code == 409
    IdempotencyKey.objects.filter(pk=legacy.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    response = post(api_a, body, key="crashed")
    assert response.status_code == 201
    assert Incident.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert (record.pk, record.state, record.response_body) == (legacy.pk, "completed", response.json())
    assert post(api_a, body, key="crashed")["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
@pytest.mark.parametrize("stored_before", [False, True], ids=["new key", "expired key"])
def test_a_request_whose_key_was_stored_after_its_lookup_cannot_commit(detector_a, stored_before):
    """The lookup's snapshot can predate the commit of the request that held the lock a moment before."""
    detector = detector_a[0]
    if stored_before:
        IdempotencyKey.objects.create(detector=detector, key="slow", request_fingerprint="f", response_status=201,
                                      response_body={}, expires_at=timezone.now() - timedelta(seconds=1))
    with transaction.atomic():
        claim = idempotency_claim(detector=detector, key="slow", fingerprint="f")
        assert claim.result is ClaimResult.CLAIMED
        # The other request's answer lands after our lookup.
        IdempotencyKey.objects.update_or_create(
            detector=detector, key="slow",
            defaults={"request_fingerprint": "f", "response_status": 200, "response_body": {"other": True},
                      "expires_at": timezone.now() + timedelta(days=2)},
        )
        with pytest.raises(LostClaimError):
            idempotency_complete(claim=claim, status=201, body={"mine": True})
        transaction.set_rollback(True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_losing_that_race_replays_the_other_requests_answer(detector_a, monkeypatch):
    """incident_accept claims again after LostClaimError, and the second claim finds the stored answer."""
    from incidents.api import filing

    detector = detector_a[0]
    submit = filing.submit

    def submit_while_another_commits(detector, validated):  # noqa: ANN001, ANN202
        result = submit(detector, validated)
        # The other request stores the key meanwhile, on its own connection, and commits.
        _concurrently(1, lambda i: IdempotencyKey.objects.create(
            detector=detector, key="race", request_fingerprint="f", response_status=201,
            response_body={"id": "theirs"}, expires_at=timezone.now() + timedelta(days=2)))
        return result

    monkeypatch.setattr(filing, "submit", submit_while_another_commits)
    outcome = filing.incident_accept(detector=detector, key="race", fingerprint="f", validated=_validated())
    assert outcome.claim.result is ClaimResult.REPLAY
    assert outcome.claim.record.response_body == {"id": "theirs"}
    assert Incident.objects.count() == 0  # ours rolled back
    assert IdempotencyKey.objects.count() == 1


def test_a_lost_claim_is_run_once_more_and_only_once():
    from incidents.services.idempotency import idempotency_retrying

    calls: list[int] = []

    def lost_then_answered() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise LostClaimError("stored by another request meanwhile")
        return "replayed"

    assert idempotency_retrying(lost_then_answered) == "replayed" and len(calls) == 2

    def always_lost() -> str:
        calls.append(1)
        raise LostClaimError("again")

    calls.clear()
    with pytest.raises(LostClaimError):
        idempotency_retrying(always_lost)
    assert len(calls) == 2


def _fingerprint(body: dict) -> str:
    from incidents.api.idempotency import request_fingerprint  # not at import: DRF's settings load it

    return request_fingerprint("incidents", body)


def _validated() -> dict:
    from incidents.api.lean_input import incident_input_lean

    validated = incident_input_lean(valid_body())
    assert validated is not None
    return validated


@pytest.mark.django_db(transaction=True)
def test_a_filed_incident_commits_once_with_its_key_written_once_inside(api_a):
    """The claim, the work and the stored answer share one transaction: one COMMIT, one write of the key."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        assert post(api_a, valid_body(), key="once").status_code == 201
    sqls = [q["sql"] for q in ctx.captured_queries]
    assert sqls.count("BEGIN") == sqls.count("COMMIT") == 1, sqls
    table = IdempotencyKey._meta.db_table
    touching = [i for i, sql in enumerate(sqls) if table in sql]
    assert len(touching) == 2, sqls  # the claim's lookup, then the INSERT of the answer
    assert sqls[touching[0]].startswith("SELECT") and sqls[touching[1]].startswith("INSERT")
    assert sqls.index("BEGIN") < touching[0] < touching[1] < sqls.index("COMMIT")


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_claims_generic_plan_uses_the_unique_index_on_a_table_without_statistics(detector_a):
    """The claim runs as a prepared statement on every request; its generic plan is made once per
    connection. On an unanalysed table it once picked a detector-only index and filtered on the key,
    reading every key of the detector per request (the intake benchmark slowed through each phase)."""
    from incidents.services.idempotency import _claim_sql

    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    sql = _claim_sql("postgresql", "transaction").replace("%s", "{}").format("$1", "$2", "$3")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE mir_claim_plan(bigint, bigint, text) AS {sql}")
        try:
            cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE mir_claim_plan(1, {int(detector_a[0].pk)}, 'k')")
            plan = json.dumps(cursor.fetchone()[0])
        finally:
            cursor.execute("DEALLOCATE mir_claim_plan")
    assert '"Index Name": "idempotency_key_unique_per_detector"' in plan, plan
    assert '"Filter"' not in plan, plan


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
