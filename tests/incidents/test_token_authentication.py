"""detector_token_authenticate reads the token and its detector in one hand-written statement:
the objects it builds must be the ORM's, field for field, and a request must cost one query."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.models import Detector, DetectorToken
from incidents.services.detectors import detector_token_authenticate
from tests.conftest import make_detector

pytestmark = pytest.mark.django_db


def field_values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_the_token_and_detector_equal_what_the_orm_loads():
    detector, secret = make_detector("fidelity", expires_at=timezone.now() + timedelta(days=3), label="ci")
    Detector.objects.filter(pk=detector.pk).update(rate_limit_per_minute=7, description="ünïcode")
    token = detector_token_authenticate(secret=secret)
    assert field_values(token) == field_values(DetectorToken.objects.get(pk=token.pk))
    assert field_values(token.detector) == field_values(Detector.objects.get(pk=detector.pk))
    assert isinstance(token.scopes, list) and token.has_scope("incidents:submit")
    assert token.expires_at.utcoffset() == timedelta(0)
    assert token._state.adding is False and token._state.db == "default"


def test_a_recently_used_token_costs_one_query(django_assert_num_queries):
    _, secret = make_detector("quick")
    assert detector_token_authenticate(secret=secret) is not None  # records last use
    with django_assert_num_queries(1):
        assert detector_token_authenticate(secret=secret) is not None


def test_last_use_is_recorded_at_most_once_a_minute(django_assert_num_queries):
    _, secret = make_detector("stale")
    DetectorToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    with django_assert_num_queries(2):
        detector_token_authenticate(secret=secret)
    assert DetectorToken.objects.get().last_used_at > timezone.now() - timedelta(seconds=30)


@pytest.mark.parametrize("secret", ["mir_unknown", "mir_" + "x" * 300, "other_prefix", ""])
def test_unknown_or_malformed_secrets_find_nothing(secret):
    make_detector("someone")
    assert detector_token_authenticate(secret=secret) is None
