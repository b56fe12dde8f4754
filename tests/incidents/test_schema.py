"""The published OpenAPI schema matches what the API does (schemathesis, property-based).

Each generated request goes through the real WSGI stack with a real detector token. Checks: never a
5xx, status codes and content types as documented, response bodies valid against the schema.
"""
from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import make_detector


@pytest.fixture
def api_schema(db):
    # The bare WSGI handler closes the DB connection at the end of each request, which would end
    # the test's transaction; Django's own test client disconnects the same signals.
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def bearer(db):
    _, secret = make_detector("schemathesis")
    return {"Authorization": f"Bearer {secret}"}


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, bearer, settings_override):
    # Every check but "schema-valid data is accepted": the API also enforces rules no JSON Schema can
    # state (a valid country code, a well-formed domain per indicator type, occurred_end after
    # occurred_start, nothing in the future). Those answer a documented 422, which
    # test_api_errors.py pins down case by case.
    case.call_and_validate(headers=bearer, excluded_checks=[positive_data_acceptance])


@pytest.fixture
def settings_override(settings):
    settings.MIR_DETECTOR_RATE_PER_MINUTE = 1_000_000
    return settings


def test_schema_documents_the_contract(client, db):
    document = client.get("/api/v1/schema/?format=json").json()
    create = document["paths"]["/api/v1/incidents/"]["post"]
    header = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["required"] is True
    assert {"201", "200", "400", "401", "403", "409", "413", "415", "422", "429"} <= set(create["responses"])
    body = document["components"]["schemas"]["IncidentInputRequest"]
    assert set(body["required"]) == {"title", "summary", "category", "severity", "detected_at", "model"}
    assert "/api/v1/incidents/batch" in document["paths"]
    assert "/api/v1/incidents/{public_id}" in document["paths"]
    assert document["components"]["securitySchemes"], "the bearer scheme is documented"
