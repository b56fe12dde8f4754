"""RowReader and row_update read and write what the ORM would (incidents/models/fast_rows.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from incidents.models import Incident
from incidents.models.fast_rows import RowReader, db_value, quote, row_update, rows_where
from tests.conftest import make_detector, make_incident

pytestmark = pytest.mark.django_db


def values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_a_whole_row_reads_as_the_orm_reads_it():
    """Every column type of the widest model: JSON lists and objects, decimals, UUIDs, times, booleans."""
    detector, _ = make_detector("d")
    incident = make_incident(countries=["DE", "FR"], techniques=["T1566"], score=0.5)
    Incident.objects.filter(pk=incident.pk).update(
        detector=detector, affected_parties=[{"category": "hospital", "count": 3}], economic_loss_usd="1234.50",
        deaths=0)
    by_orm = Incident.objects.get(pk=incident.pk)
    reader = RowReader(Incident, "i")
    [read] = reader.select(f"SELECT {reader.columns} FROM {quote('incidents_incident')} {quote('i')} "
                           f"WHERE {quote('i')}.{quote('id')} = %s", [incident.pk])
    assert type(read) is Incident and read._state.adding is False and read._state.db == connection.alias
    assert values(read) == values(by_orm)
    assert read.get_deferred_fields() == set()


def test_a_subset_reads_those_columns_and_defers_the_rest():
    incident = make_incident(severity="SEV-2")
    reader = RowReader(Incident, "x", ("severity", "id", "detected_at"))  # any order: read in model order
    [read] = reader.select(f"SELECT {reader.columns} FROM incidents_incident {quote('x')} WHERE id = %s",
                           [incident.pk])
    assert (read.pk, read.severity, read.detected_at) == (incident.pk, "SEV-2", incident.detected_at)
    assert "title" in read.get_deferred_fields()
    with pytest.raises(ValueError, match="primary key"):
        RowReader(Incident, "x", ("severity",))


def test_an_outer_join_miss_is_none():
    reader = RowReader(Incident, "i")
    assert reader.instance([None] * reader.width) is None


def test_rows_where_is_filter_order_limit():
    first, second = make_incident(title="one"), make_incident(title="two")
    found = rows_where(Incident, "id IN (%s, %s)", [first.pk, second.pk], order_by="id DESC", limit=1)
    assert [i.pk for i in found] == [second.pk]
    assert rows_where(Incident, "id = %s", [-1]) == []


def test_row_update_writes_what_save_update_fields_writes():
    by_save, by_update = make_incident(), make_incident()
    before = Incident.objects.get(pk=by_update.pk).updated_at
    for incident in (by_save, by_update):
        incident.summary, incident.deaths, incident.countries = "changed", 2, ["NL"]
    by_save.save(update_fields=["summary", "deaths", "countries", "updated_at"])
    assert row_update(by_update, ["summary", "deaths", "countries", "updated_at"]) == 1
    stored = Incident.objects.get(pk=by_update.pk)
    assert (stored.summary, stored.deaths, stored.countries) == ("changed", 2, ["NL"])
    assert stored.updated_at > before and stored.updated_at == by_update.updated_at  # auto_now stamped, as save does
    assert Incident.objects.get(pk=by_save.pk).countries == ["NL"]


def test_row_update_of_a_missing_row_raises_and_a_condition_returns_the_count():
    incident = make_incident()
    gone = Incident(pk=-5)
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        row_update(gone, ["summary"])
    incident.summary = "guarded"
    later = db_value(Incident, "detected_at", incident.detected_at + timedelta(days=1))
    assert row_update(incident, ["summary"], where="detected_at > %s", params=[later]) == 0
    assert Incident.objects.get(pk=incident.pk).summary != "guarded"
    assert row_update(incident, ["summary"], where="detected_at <= %s", params=[db_value(
        Incident, "detected_at", timezone.now())]) == 1
    assert Incident.objects.get(pk=incident.pk).summary == "guarded"
    with pytest.raises(ValueError, match="non-key"):
        row_update(incident, ["id"])
