"""The reviewer API matches its published OpenAPI schema (schemathesis, as for the detector API):
never a 5xx, documented statuses and content types, 200 bodies valid against the schema."""
from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.reporting.portal.feed_helpers import issue_token


@pytest.fixture
def reviewer_schema(db):
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("reviewer_schema").include(tag="reviewer")


@pytest.fixture
def reviewer_bearer(world, report_a, settings):
    settings.MIR_REVIEWER_RATE_PER_MINUTE = 1_000_000
    return {"Authorization": f"Bearer {issue_token(world.reviewer_a.reviewer).secret}"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_reviewer_api_conforms_to_its_schema(case, reviewer_bearer):
    # Filters have rules a JSON Schema does not state (an end date after the start, a year from 1970):
    # a documented 400, pinned down in test_reviewer_api.py.
    case.call_and_validate(headers=reviewer_bearer, excluded_checks=[positive_data_acceptance])
