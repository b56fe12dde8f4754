"""The rows one delivery reads, each in one prebuilt statement (incidents.models.fast_rows).

What the ORM gave delivery before, instance for instance: a report with its incident (and detector),
destination (and authority), rule and stage, the incident's accounts, indicators and evidence in their
model order, and the locks every path takes in one order (incident, report, destination). Only the
per-call query building is gone; docs/performance.md ("Delivery") has the figures.
"""
from __future__ import annotations

import functools

from django.db import connection

from incidents.models import Account, Detector, Evidence, Incident, Indicator
from incidents.models.fast_rows import RowReader, quote
from reporting.models import Destination, Report, ReportingRule, RuleStage
from reporting.portal.models import Authority

# The report joined to everything its document names, in this order; an outer join where the row may lack
# one (a digest has no incident, an answer stage no rule stage, an incident filed by a person no detector).
_JOINED = (
    (Report, "r", None),
    (Incident, "i", ("LEFT JOIN", "r", "incident_id")),
    (Detector, "de", ("LEFT JOIN", "i", "detector_id")),
    (Destination, "d", ("JOIN", "r", "destination_id")),
    (Authority, "a", ("JOIN", "d", "authority_id")),
    (ReportingRule, "ru", ("JOIN", "r", "rule_id")),
    (RuleStage, "s", ("LEFT JOIN", "r", "stage_id")),
)
_PARTS = (("accounts", Account), ("indicators", Indicator), ("evidence", Evidence))


def _lock(clause: str) -> str:
    # Databases without row locks (SQLite, the embedded default) serialise writers anyway.
    return f" {clause}" if connection.features.has_select_for_update else ""


@functools.cache
def _report_query() -> tuple[str, tuple[RowReader, ...]]:
    readers = tuple(RowReader(model, alias) for model, alias, _ in _JOINED)
    tables = [f"{quote(Report._meta.db_table)} {quote('r')}"]
    for model, alias, (join, parent, column) in ((m, a, j) for m, a, j in _JOINED if j):
        tables.append(f"{join} {quote(model._meta.db_table)} {quote(alias)} "
                      f"ON {quote(alias)}.{quote('id')} = {quote(parent)}.{quote(column)}")
    of = " OF " + quote("r") if connection.features.has_select_for_update_of else ""
    sql = (f"SELECT {', '.join(r.columns for r in readers)} FROM {' '.join(tables)} "  # noqa: S608
           f"WHERE {quote('r')}.{quote('id')} = %s{_lock('FOR UPDATE' + of)}")
    return sql, readers


def report_locked_with_relations(report_id: int) -> Report | None:
    """The report, row-locked, with incident, detector, destination, authority, rule and stage attached
    (as ``select_related`` attaches them) and, for an incident's report not yet frozen, the incident's parts
    prefetched for its document (a frozen report is sent as it is and never rebuilt)."""
    sql, readers = _report_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [report_id])
        row = cursor.fetchone()
    if row is None:
        return None
    found, start = {}, 0
    for (model, _alias, _join), reader in zip(_JOINED, readers, strict=True):
        found[model] = reader.instance(row, start)
        start += reader.width
    report, incident, destination = found[Report], found[Incident], found[Destination]
    Report._meta.get_field("incident").set_cached_value(report, incident)
    Report._meta.get_field("destination").set_cached_value(report, destination)
    Report._meta.get_field("rule").set_cached_value(report, found[ReportingRule])
    Report._meta.get_field("stage").set_cached_value(report, found[RuleStage])
    Destination._meta.get_field("authority").set_cached_value(destination, found[Authority])
    if incident is not None:
        Incident._meta.get_field("detector").set_cached_value(incident, found[Detector])
        if report.frozen_at is None:
            _prefetch_parts(incident)
    return report


@functools.cache
def _parts_query(model: type) -> tuple[str, RowReader]:
    reader = RowReader(model, "p")
    order = ", ".join(f"{quote('p')}.{quote(model._meta.get_field(name).column)}" for name in model._meta.ordering)
    sql = (f"SELECT {reader.columns} FROM {quote(model._meta.db_table)} {quote('p')} "  # noqa: S608
           f"WHERE {quote('p')}.{quote('incident_id')} = %s ORDER BY {order}")
    return sql, reader


def _prefetch_parts(incident: Incident) -> None:
    """Fill ``incident.<part>.all()`` as ``prefetch_related`` does: a queryset holding the rows, in model order."""
    cache = incident.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, model in _PARTS:
        sql, reader = _parts_query(model)
        rows = reader.select(sql, [incident.pk])
        field = model._meta.get_field("incident")
        for row in rows:
            field.set_cached_value(row, incident)
        queryset = getattr(incident, name).get_queryset()
        queryset._result_cache, queryset._prefetch_done = rows, True
        cache[field.remote_field.cache_name] = queryset


@functools.cache
def _destination_query() -> tuple[str, RowReader]:
    reader = RowReader(Destination, "d")
    sql = (f"SELECT {reader.columns} FROM {quote(Destination._meta.db_table)} {quote('d')} "  # noqa: S608
           f"WHERE {quote('d')}.{quote('id')} = %s{_lock('FOR SHARE')}")
    return sql, reader


def destination_share_locked(destination_id: int) -> Destination:
    """The destination row, read with FOR SHARE (held until the caller's transaction ends).

    Taken after the incident's and the report's locks, the order every other path locks them in
    (incident, report, destination), so it adds no deadlock.
    """
    sql, reader = _destination_query()
    return reader.select(sql, [destination_id])[0]


@functools.cache
def _incident_for_report_sql() -> str:
    incident, report = quote(Incident._meta.db_table), quote(Report._meta.db_table)
    of = " OF " + quote("i") if connection.features.has_select_for_update_of else ""
    return (f"SELECT {quote('i')}.{quote('id')} FROM {incident} {quote('i')} "  # noqa: S608
            f"JOIN {report} {quote('r')} ON {quote('r')}.{quote('incident_id')} = {quote('i')}.{quote('id')} "
            f"WHERE {quote('r')}.{quote('id')} = %s{_lock('FOR UPDATE' + of)}")


def incident_lock_for_report(report_id: int) -> None:
    """Lock the report's incident (FOR UPDATE OF the incident, if it has one), in the caller's transaction,
    before the report itself.

    Every path that holds both takes them in this order: the incident services and ``obligations_sync``
    lock the incident, then its reports. Locking a report and then its incident deadlocks against them,
    e.g. two reports of one incident recorded at once by two workers (tests/e2e/test_delivery_faults.py).
    """
    with connection.cursor() as cursor:
        cursor.execute(_incident_for_report_sql(), [report_id])


@functools.cache
def _reader(model: type, fields: tuple[str, ...]) -> RowReader:
    return RowReader(model, "x", fields)


def row_locked(model: type, pk: int, fields: tuple[str, ...]) -> object | None:
    """``fields`` of one row (with its key), row-locked; the rest deferred."""
    reader = _reader(model, fields)
    table = quote(model._meta.db_table)
    rows = reader.select(f"SELECT {reader.columns} FROM {table} {quote('x')} "  # noqa: S608
                         f"WHERE {quote('x')}.{quote('id')} = %s{_lock('FOR UPDATE')}", [pk])
    return rows[0] if rows else None
