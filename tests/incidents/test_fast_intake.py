"""The intake fast path answers exactly as the DRF path does, and hands everything else to it unharmed.

Each scenario runs twice, on two fresh detectors: once with MIR_API_FAST_INTAKE on, once off (every
request through DRF). The last answers must agree in status, body bytes and every header; only the
ids of the incidents filed (public id, reference, the URL holding the id) differ and are replaced by
placeholders first. Each scenario also says whether the fast path served its last request, so a fast
path that quietly handed everything to DRF would fail here too.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from incidents.api import fast_intake
from incidents.api.idempotency import request_fingerprint
from incidents.models import DetectorToken, IdempotencyKey, Incident
from tests.conftest import api_client, key_held_elsewhere, make_detector, post, valid_body

pytestmark = pytest.mark.django_db
PATH = "/api/v1/incidents/"
_serial = itertools.count()
_IDS = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|INC-\d{6}")


@dataclass
class Run:
    detector: object
    secret: str

    @property
    def client(self):
        return api_client(self.secret)


def _created(run: Run):
    return post(run.client, valid_body(), key="k1")


def _grouped(run: Run):
    post(run.client, valid_body(fingerprint="fp-1"), key="k1")
    return post(run.client, valid_body(fingerprint="fp-1", severity="SEV-1"), key="k2")


def _replay(run: Run):
    body = valid_body()
    post(run.client, body, key="k1")
    return post(run.client, body, key="k1")


def _in_flight(run: Run):
    body = valid_body()
    with key_held_elsewhere(run.detector, "k1", request_fingerprint("incidents", body)):
        return post(run.client, body, key="k1")


def _mismatch(run: Run):
    post(run.client, valid_body(), key="k1")
    return post(run.client, valid_body(title="Another incident"), key="k1")


def _raw(content_type: str, raw: bytes, **extra) -> Callable[[Run], object]:
    def scenario(run: Run):
        return run.client.generic("POST", PATH, raw, content_type=content_type, HTTP_IDEMPOTENCY_KEY="k1", **extra)
    return scenario


def _with_header(header: str | None) -> Callable[[Run], object]:
    def scenario(run: Run):
        extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
        return post(api_client(None), valid_body(), key="k1", **extra)
    return scenario


def _read_only(run: Run):
    _, secret = make_detector(f"reader-{run.detector.name}", scopes=["incidents:read"])
    return post(api_client(secret), valid_body(), key="k1")


@override_settings(MIR_API_MAX_BODY_BYTES=1024)
def _too_large(run: Run):
    return post(run.client, valid_body(summary="x" * 2000), key="k1")


def _throttled(run: Run):
    run.detector.rate_limit_per_minute = 1
    run.detector.save()
    # The answer names the seconds left in the window: both runs see the same clock, which stands
    # still in mid-window in every test (tests/conftest.py), so the two answers can be compared.
    post(run.client, valid_body(), key="k1")
    return post(run.client, valid_body(), key="k2")


VALID = json.dumps(valid_body()).encode()
# (scenario, whether the fast path serves its last request)
SCENARIOS = {
    "created": (_created, True),
    "grouped": (_grouped, True),
    "replay": (_replay, True),
    "409 in flight": (_in_flight, False),
    "422 key reused with another body": (_mismatch, False),
    "401 no token": (_with_header(None), False),
    "401 unknown token": (_with_header("Bearer mir_nope"), False),
    "401 other scheme": (_with_header("Token abc"), False),
    "403 scope": (_read_only, False),
    "413": (_too_large, False),
    "415": (_raw("text/plain", VALID), False),
    "400 malformed json": (_raw("application/json", b'{"title": '), False),
    "400 duplicate key": (_raw("application/json", b'{"title": "a", "title": "b"}'), False),
    "400 charset": (_raw("application/json; charset=latin-1", VALID), False),
    "400 no idempotency key": (lambda run: post(run.client, valid_body(), key=None), False),
    "400 bad idempotency key": (lambda run: post(run.client, valid_body(), key="a b"), False),
    "422 validation": (lambda run: post(run.client, valid_body(severity="SEV-9"), key="k1"), False),
    "422 not an object": (_raw("application/json", b"[]"), False),
    "422 no content length": (_raw("application/json", VALID, CONTENT_LENGTH=""), False),
    "406 accept": (_raw("application/json", VALID, HTTP_ACCEPT="text/html"), False),
    "accept with indent": (_raw("application/json", VALID, HTTP_ACCEPT="application/json; indent=2"), False),
    "429": (_throttled, False),
}


def _answer(response) -> tuple[int, bytes, dict]:
    headers = {name: _IDS.sub(b"<id>", value.encode()).decode() for name, value in response.items()}
    return response.status_code, _IDS.sub(b"<id>", response.content), headers


def _run(scenario, *, fast: bool, spy: list) -> tuple[int, bytes, dict]:
    detector, secret = make_detector(f"detector-{'fast' if fast else 'drf'}-{next(_serial)}")
    cache.clear()
    spy.clear()
    with override_settings(MIR_API_FAST_INTAKE=fast):
        response = scenario(Run(detector, secret))
    return _answer(response)


@pytest.fixture
def spy(monkeypatch):
    """Whether the fast path answered each request (True) or handed it to DRF (False)."""
    served: list[bool] = []
    serve = fast_intake.serve

    def recording(view, request):
        response = serve(view, request)
        served.append(response is not None)
        return response

    monkeypatch.setattr(fast_intake, "serve", recording)
    return served


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fast_path_answers_as_drf_does(name, spy):
    scenario, served_fast = SCENARIOS[name]
    fast = _run(scenario, fast=True, spy=spy)
    assert spy[-1:] == [served_fast], spy
    drf = _run(scenario, fast=False, spy=spy)
    assert spy == []
    assert fast == drf


def test_a_created_answer_carries_the_middleware_headers(api_a, spy):
    response = post(api_a, valid_body())
    assert spy == [True]
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "POST, OPTIONS"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    body = response.json()
    assert response["Location"] == body["url"] == f"/api/v1/incidents/{body['id']}"
    assert Incident.objects.get().public_id.hex == body["id"].replace("-", "")


@pytest.mark.parametrize("scenario", [_mismatch, _in_flight])
def test_a_request_handed_over_after_the_throttle_is_counted_once(scenario, spy):
    """The mismatch and in-flight answers come from DRF after the fast path counted the request: DRF
    must reuse that count (and the authenticated token) rather than count and look up again."""
    detector, secret = make_detector("counted")
    detector.rate_limit_per_minute = 3
    detector.save()
    run = Run(detector, secret)
    with CaptureQueriesContext(connection) as queries:
        refused = scenario(run)
    assert refused.status_code in (409, 422)
    assert spy[-1] is False
    token_table = DetectorToken._meta.db_table
    lookups = [q for q in queries.captured_queries if f'FROM "{token_table}"' in q["sql"]]
    assert len(lookups) == len(spy), lookups  # one token lookup per request, hand-over or not
    # Two requests counted so far (one for the in-flight scenario, whose holder is not a request);
    # had the hand-over counted its request twice, the third would already be refused.
    counted = 2 if scenario is _mismatch else 1
    for index in range(3 - counted):
        assert post(run.client, valid_body(), key=f"more-{index}").status_code == 201
    assert post(run.client, valid_body(), key="one-too-many").status_code == 429


def test_a_service_refusal_after_the_claim_is_worded_by_drf_and_stores_nothing(monkeypatch, spy):
    """What the lean check accepts but the service refuses: the fast path's transaction rolls back
    (claim included) and it hands over; the DRF path claims again, is refused again and answers 422."""
    from incidents.api import filing

    def refuse(**kwargs):
        raise ValidationError({"title": ["refused by the service"]})

    monkeypatch.setattr(filing, "incident_create", refuse)
    answers = [_run(_created, fast=fast, spy=spy) for fast in (True, False)]
    assert answers[0] == answers[1]
    status, content, _ = answers[0]
    assert status == 422 and b"refused by the service" in content
    assert not IdempotencyKey.objects.exists() and not Incident.objects.exists()
