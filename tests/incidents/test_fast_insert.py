"""rows_insert writes what the ORM would write, or refuses (incidents/models/fast_insert.py)."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from incidents.models import Account, AuditEvent, Incident, Indicator
from incidents.models.fast_insert import rows_insert
from tests.conftest import incident_fields, make_detector, make_incident

pytestmark = pytest.mark.django_db

SKIP = {"id", "public_id", "created_at", "updated_at"}


def stored(obj) -> dict:
    row = type(obj).objects.get(pk=obj.pk)
    return {f.attname: getattr(row, f.attname) for f in type(obj)._meta.concrete_fields if f.attname not in SKIP}


def test_an_incident_row_equals_the_one_save_writes():
    detector, _ = make_detector("d")
    fields = incident_fields(countries=["DE"], techniques=["T1566"], score=0.5, detector=detector)
    by_orm, by_insert = Incident(**fields), Incident(**fields)
    for draft in (by_orm, by_insert):
        draft.last_seen_at = draft.detected_at
    by_orm.save()
    rows_insert([by_insert])
    assert by_insert.pk and by_insert._state.adding is False
    assert stored(by_insert) == stored(by_orm)
    assert by_insert.created_at is not None and by_insert.updated_at is not None
    assert Incident.objects.get(pk=by_insert.pk).public_id == by_insert.public_id


def test_many_rows_get_their_own_keys_in_order():
    incident = make_incident()
    rows = [Indicator(incident=incident, type="domain", value=f"d{i}.example") for i in range(5)]
    rows_insert(rows)
    assert [Indicator.objects.get(pk=r.pk).value for r in rows] == [f"d{i}.example" for i in range(5)]


def test_json_and_foreign_keys_round_trip():
    incident = make_incident()
    event = AuditEvent(incident=incident, object_type="x", object_id="1", action="a", actor_kind="system",
                       actor_label="t", changes={"nested": ["ü", 1, None]})
    rows_insert([event])
    assert AuditEvent.objects.get(pk=event.pk).changes == {"nested": ["ü", 1, None]}


def test_a_unique_violation_is_djangos_integrity_error_and_writes_nothing():
    incident = make_incident()
    rows_insert([Account(incident=incident, identifier="u1")])
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert([Account(incident=incident, identifier="u2"), Account(incident=incident, identifier="u1")])
    assert list(Account.objects.values_list("identifier", flat=True)) == ["u1"]


def test_saved_rows_mixed_models_and_unsaved_parents_are_refused():
    incident = make_incident()
    saved = Account(incident=incident, identifier="u")
    rows_insert([saved])
    with pytest.raises(ValueError, match="new, unsaved"):
        rows_insert([saved])
    with pytest.raises(ValueError, match="new, unsaved"):
        rows_insert([Account(incident=incident, identifier="a"), Indicator(incident=incident, type="ip", value="::1")])
    with pytest.raises(ValueError, match="unsaved related object"):
        rows_insert([Account(incident=Incident(**incident_fields()), identifier="b")])
    rows_insert([])  # nothing to do



def test_psycopg_keeps_the_parsed_incident_insert():
    """The incident INSERT (over 50 parameters) is parsed once per process, not on every request
    (psycopg_cache_wide_statements); this fails if a psycopg upgrade renames the limit it raises."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("psycopg only")
    from psycopg import _queries

    from incidents.models.fast_insert import _insert_sql

    assert 50 < len(_insert_sql(Incident, 1)[1]) <= _queries.MAX_CACHED_STATEMENT_PARAMS

    def parsed() -> tuple[int, int]:
        infos = [_queries._query2pg.cache_info(), _queries._query2pg_client.cache_info()]
        return sum(i.hits for i in infos), sum(i.misses for i in infos)

    drafts = [Incident(**incident_fields()) for _ in range(2)]
    for draft in drafts:
        draft.last_seen_at = draft.detected_at
    rows_insert([drafts[0]])
    hits, misses = parsed()
    rows_insert([drafts[1]])  # one statement: the same INSERT again, found in the cache
    assert parsed() == (hits + 1, misses)
