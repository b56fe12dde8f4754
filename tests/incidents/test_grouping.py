"""Fingerprint grouping: repeats of an open incident become occurrences, and nothing in them is lost."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Status
from incidents.models import AuditEvent, Incident
from incidents.services.workflow import incident_transition
from tests.conftest import api_client, post, valid_body
from tests.incidents.test_idempotency import _concurrently


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_repeat_within_window_adds_an_occurrence(api_a):
    first = post(api_a, valid_body(fingerprint="fp-1"), key="a").json()
    second = post(
        api_a,
        valid_body(
            fingerprint="fp-1",
            indicators=[{"type": "domain", "value": "new.example"}],
            accounts=[{"id": "acct-9"}],
            evidence=[{"kind": "output", "description": "later output", "content": "more"}],
            techniques=["AML.T0051"],
        ),
        key="b",
    )
    assert second.status_code == 200
    body = second.json()
    assert body["grouped"] is True and body["id"] == first["id"] and body["occurrence_count"] == 2
    assert second["Location"] == first["url"]
    incident = Incident.objects.get()
    assert incident.occurrence_count == 2
    assert list(incident.indicators.values_list("value", flat=True)) == ["new.example"]
    assert incident.accounts.count() == 1 and incident.evidence.count() == 1
    assert incident.techniques == ["AML.T0051"]
    assert AuditEvent.objects.filter(incident=incident, action="occurrence_added").count() == 1
    assert AuditEvent.objects.filter(incident=incident, action="parts_added").count() == 1


@pytest.mark.django_db
def test_more_severe_occurrence_raises_severity(api_a):
    post(api_a, valid_body(fingerprint="fp", severity="SEV-3"), key="a")
    post(api_a, valid_body(fingerprint="fp", severity="SEV-0", imminent_risk_to_life=True), key="b")
    post(api_a, valid_body(fingerprint="fp", severity="SEV-4"), key="c")
    incident = Incident.objects.get()
    assert incident.severity == "SEV-0" and incident.imminent_risk_to_life is True
    assert incident.occurrence_count == 3
    event = AuditEvent.objects.filter(incident=incident, action="occurrence_added").order_by("id")[0]
    assert event.changes["severity"] == ["SEV-3", "SEV-0"]


@pytest.mark.django_db
def test_last_seen_moves_forward_only(api_a):
    now = timezone.now()
    post(api_a, valid_body(fingerprint="fp", detected_at=iso(now - timedelta(minutes=10))), key="a")
    post(api_a, valid_body(fingerprint="fp", detected_at=iso(now - timedelta(minutes=2))), key="b")
    post(api_a, valid_body(fingerprint="fp", detected_at=iso(now - timedelta(minutes=30))), key="c")
    incident = Incident.objects.get()
    assert abs((incident.last_seen_at - (now - timedelta(minutes=2))).total_seconds()) < 1


@pytest.mark.django_db
@override_settings(MIR_GROUPING_WINDOW_SECONDS=3600)
def test_repeat_outside_window_opens_a_new_incident(api_a):
    now = timezone.now()
    post(api_a, valid_body(fingerprint="fp", detected_at=iso(now - timedelta(hours=3))), key="a")
    response = post(api_a, valid_body(fingerprint="fp", detected_at=iso(now)), key="b")
    assert response.status_code == 201 and response.json()["grouped"] is False
    assert Incident.objects.count() == 2


@pytest.mark.django_db
def test_no_grouping_across_detectors_categories_or_closed_incidents(api_a, api_b, staff_actor):
    post(api_a, valid_body(fingerprint="fp"), key="a")
    assert post(api_b, valid_body(fingerprint="fp"), key="a").status_code == 201  # other detector
    assert post(api_a, valid_body(fingerprint="fp", category="CYBER"), key="b").status_code == 201  # other category
    assert post(api_a, valid_body(), key="c").status_code == 201  # no fingerprint
    assert Incident.objects.count() == 4
    original = Incident.objects.get(detector__name="classifier-a", fingerprint="fp", category="FRAUD")
    incident_transition(incident=original, actor=staff_actor, to=Status.DISMISSED, reason="benign")
    assert post(api_a, valid_body(fingerprint="fp"), key="d").status_code == 201  # dismissed is not open
    assert Incident.objects.count() == 5


@pytest.mark.django_db
def test_only_detectors_group(staff_user):
    from django.core.exceptions import ValidationError

    from incidents.services.intake import incident_create
    from tests.conftest import incident_fields

    with pytest.raises(ValidationError):
        incident_create(actor=Actor.for_user(staff_user), fields=incident_fields(), fingerprint="x")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(MIR_DETECTOR_RATE_PER_MINUTE=10_000)
def test_concurrent_first_occurrences_make_one_incident(detector_a):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    secret = detector_a[1]
    codes = _concurrently(8, lambda i: post(api_client(secret), valid_body(fingerprint="storm"), key=f"k{i}").status_code)
    assert sorted(codes) == [200] * 7 + [201]
    incident = Incident.objects.get()
    assert incident.occurrence_count == 8
