"""A new incident, its parts and its "created" audit event are written with one statement on PostgreSQL
(rows_insert_family, incidents/models/fast_insert.py) and with one INSERT per table on SQLite; the rows
are the same either way, and the same as separate rows_insert calls write."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents.actors import Actor
from incidents.models import Account, AuditEvent, Evidence, Incident, Indicator
from incidents.models.fast_insert import rows_insert, rows_insert_family
from incidents.services.intake import incident_create
from scripts.bench_intake import incident_body
from tests.conftest import SYSTEM, incident_fields, make_detector, post

pytestmark = pytest.mark.django_db

PARTS = (Account, Indicator, Evidence, AuditEvent)
# Differ between two writes of the same content: keys, public ids, timestamps. The parent link is
# compared to the parent's key instead, an audit event's object_id to its incident's public id.
SKIP = {"id", "public_id", "created_at", "updated_at", "incident_id", "object_id"}
IS_POSTGRES = connection.vendor == "postgresql"
DETECTED = timezone.now() - timedelta(hours=1)


def stored(obj) -> dict:
    row = type(obj).objects.get(pk=obj.pk)
    return {f.attname: getattr(row, f.attname) for f in type(obj)._meta.concrete_fields if f.attname not in SKIP}


def family(detector, *, accounts: int = 1, indicators: int = 2, evidence: int = 1):  # noqa: ANN001, ANN201
    """An unsaved incident and its parts and audit event, all pointing at it, as incident_create builds them."""
    incident = Incident(**incident_fields(
        countries=["DE"], techniques=["T1566"], score=0.5, detector=detector, detected_at=DETECTED
    ))
    incident.last_seen_at = incident.detected_at
    groups = [
        [Account(incident=incident, identifier=f"acct-{i}", enforcement_action="suspended") for i in range(accounts)],
        [Indicator(incident=incident, type="domain", value=f"d{i}.example") for i in range(indicators)],
        [
            Evidence(incident=incident, kind="prompt", description=f"prompt {i}", content=f"c{i}",
                     sha256=hashlib.sha256(f"c{i}".encode()).hexdigest(), size_bytes=2)
            for i in range(evidence)
        ],
        [
            AuditEvent(incident=incident, object_type="incidents.incident", object_id=str(incident.public_id),
                       action="created", actor_kind="detector", actor_detector=detector, actor_label="d",
                       changes={"parts": {"accounts": accounts}, "ü": [1, None]})
        ],
    ]
    return incident, groups


def written(incident: Incident, groups) -> list[dict]:  # noqa: ANN001
    rows = [stored(incident)]
    for group in groups:
        for row in group:
            assert row.pk and row._state.adding is False and row._state.db == "default"
            assert row.incident_id == incident.pk and row.incident is incident
            rows.append(stored(row))
            assert type(row).objects.get(pk=row.pk).incident_id == incident.pk
    return rows


def test_one_statement_writes_the_rows_separate_inserts_write():
    detector, _ = make_detector("d")
    together, together_groups = family(detector)
    separate, separate_groups = family(detector)
    with CaptureQueriesContext(connection) as ctx:
        rows_insert_family(together, together_groups)
    rows_insert([separate])
    for group in separate_groups:
        rows_insert(group)
    assert len(ctx.captured_queries) == (1 if IS_POSTGRES else 5)
    assert together.pk and together._state.adding is False and together._state.db == "default"
    assert written(together, together_groups) == written(separate, separate_groups)
    event = AuditEvent.objects.get(pk=together_groups[3][0].pk)
    assert event.object_id == str(together.public_id) and event.changes == {"parts": {"accounts": 1}, "ü": [1, None]}
    assert Incident.objects.get(pk=together.pk).public_id == together.public_id


def test_many_parts_get_their_own_keys_in_order_and_a_repeated_shape_still_works():
    detector, _ = make_detector("d")
    # Seven times the same shape: psycopg prepares a statement on the server from its fifth use on.
    for _ in range(7):
        incident, groups = family(detector, accounts=20, indicators=30, evidence=5)
        rows_insert_family(incident, groups)
        written(incident, groups)
        assert [Indicator.objects.get(pk=r.pk).value for r in groups[1]] == [f"d{i}.example" for i in range(30)]
        assert [Account.objects.get(pk=r.pk).identifier for r in groups[0]] == [f"acct-{i}" for i in range(20)]
        assert Indicator.objects.filter(incident=incident).count() == 30


def test_no_children_and_empty_groups():
    detector, _ = make_detector("d")
    incident, _ = family(detector, accounts=0, indicators=0, evidence=0)
    rows_insert_family(incident, [[], [], []])
    assert Incident.objects.filter(pk=incident.pk).exists()
    alone = Incident(**incident_fields())
    alone.last_seen_at = alone.detected_at
    rows_insert_family(alone, [])
    assert stored(alone)["title"] == "Intrusion tooling"


@pytest.mark.parametrize("broken", ["duplicate account", "evidence digest not hex"])
def test_a_failing_child_row_leaves_nothing_stored(broken):
    detector, _ = make_detector("d")
    incident, groups = family(detector, accounts=2)
    if broken == "duplicate account":  # unique constraint
        groups[0][1].identifier = groups[0][0].identifier
    else:  # check constraint
        groups[2][0].sha256 = "not hex"
    before = {model: model.objects.count() for model in (Incident, *PARTS)}
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert_family(incident, groups)
    assert {model: model.objects.count() for model in (Incident, *PARTS)} == before


def test_rows_not_linked_to_the_parent_or_with_unsaved_relations_are_refused_before_writing():
    detector, _ = make_detector("d")
    other = Incident(**incident_fields())
    incident, groups = family(detector)
    groups[1][0].incident = other
    with pytest.raises(ValueError, match="not linked to the parent"):
        rows_insert_family(incident, groups)
    incident, groups = family(detector)
    groups[3][0].actor_detector = type(detector)(name="unsaved")
    with pytest.raises(ValueError, match="unsaved related object 'actor_detector'"):
        rows_insert_family(incident, groups)
    incident, groups = family(detector)
    rows_insert_family(incident, groups)
    with pytest.raises(ValueError, match="new, unsaved"):
        rows_insert_family(incident, [])
    assert Incident.objects.count() == 1


def _filing_inserts(ctx: CaptureQueriesContext) -> list[str]:
    tables = ["incidents_incident", *(m._meta.db_table for m in PARTS)]
    return [q["sql"] for q in ctx.captured_queries if any(f'INSERT INTO "{t}"' in q["sql"] for t in tables)]


def test_the_api_files_the_benchmark_body_with_one_insert(api_a, detector_a):
    with CaptureQueriesContext(connection) as ctx:
        response = post(api_a, incident_body(0, 1))
    assert response.status_code == 201, response.content
    inserts = _filing_inserts(ctx)
    incident = Incident.objects.get(public_id=response.json()["id"])
    if IS_POSTGRES:
        assert len(inserts) == 1, inserts
        assert all(f'INSERT INTO "{m._meta.db_table}"' in inserts[0] for m in (Incident, *PARTS))
    else:
        assert len(inserts) == 5, inserts
    assert incident.accounts.count() == 1 and incident.indicators.count() == 2 and incident.evidence.count() == 1
    event = AuditEvent.objects.get(incident=incident)
    assert event.action == "created" and event.actor_detector == detector_a[0]
    assert event.changes["parts"] == {"accounts": 1, "indicators": 2, "evidence": 1}


def test_staff_filing_shares_the_statement(staff_user):
    """The admin's path (a user actor, a savepoint) files through the same one statement."""
    with CaptureQueriesContext(connection) as ctx:
        result = incident_create(
            actor=Actor.for_user(staff_user), fields=incident_fields(),
            indicators=[{"type": "domain", "value": "a.example"}],
        )
    assert len(_filing_inserts(ctx)) == (1 if IS_POSTGRES else 3)
    incident = result.incident
    assert incident.filed_by == staff_user and incident.indicators.get().value == "a.example"
    assert AuditEvent.objects.get(incident=incident).actor_user == staff_user
    assert incident_create(actor=SYSTEM, fields=incident_fields()).incident.pk > incident.pk  # no parts at all


@pytest.mark.postgres
def test_psycopg_keeps_the_parsed_filing_statement():
    """The benchmark body's filing statement (91 parameters) fits psycopg's raised limit for statements whose
    parsed form it caches (psycopg_cache_wide_statements), so it is not parsed afresh on every request."""
    if not IS_POSTGRES:
        pytest.fail("this test needs PostgreSQL (psycopg): run it with `make test`")
    from psycopg import _queries

    from incidents.models.fast_insert import _family_sql

    shape = ((Account, 1), (Indicator, 2), (Evidence, 1), (AuditEvent, 1))
    assert 50 < _family_sql(Incident, shape).count("%s") <= _queries.MAX_CACHED_STATEMENT_PARAMS
