"""Read rows into model instances, and update chosen columns, without the ORM's per-call query building.

The companion of ``fast_insert`` for delivery's hot path (docs/performance.md, "Delivery"). A queryset
builds a query object and runs the SQL compiler on every call; for the dozen statements one delivered
report costs, that was most of the worker's CPU, more than PostgreSQL spent running them. Here:

- ``RowReader`` names one model's columns in a ``SELECT`` (all concrete fields, or the ones given) and
  turns its slice of a result row into an instance exactly as the ORM would: the backend's and each
  field's converters applied (JSON decoded, SQLite's text times parsed, ...), then ``Model.from_db``.
  A caller writes its SQL once (a join, a lock clause) around ``reader.columns``;
- ``row_update`` writes chosen fields of an existing instance the way ``save(update_fields=...)`` does
  (each field's ``pre_save``, so ``auto_now`` stamps, then ``get_db_prep_save``), with an optional extra
  condition, from SQL built once per process for a model and a set of fields.

Like ``fast_insert`` they send no model signals and skip ``Model.save()`` overrides (this project uses
neither on these paths); errors are Django's.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models

Converter = Callable[[object, object, object], object]


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


class RowReader:
    """One model's columns in a SELECT (alias ``alias``), and the instance made from its slice of a row."""

    def __init__(self, model: type[models.Model], alias: str, fields: Sequence[str] | None = None) -> None:
        meta = model._meta
        self.model = model
        self.alias = alias
        # In the model's field order, which ``from_db`` expects of a subset too.
        wanted = None if fields is None else {meta.get_field(n) for n in fields}
        self.fields = tuple(f for f in meta.concrete_fields if wanted is None or f in wanted)
        if wanted is not None and len(wanted) != len(self.fields):
            raise ValueError(f"{meta.label}: a RowReader reads concrete fields")
        if meta.pk not in self.fields:
            raise ValueError(f"{meta.label}: a RowReader reads the primary key")
        self.width = len(self.fields)
        self._pk_index = self.fields.index(meta.pk)
        # from_db takes every concrete field positionally, or names for a subset (the rest deferred).
        self._names = None if fields is None else [f.attname for f in self.fields]
        self.columns = ", ".join(f"{quote(alias)}.{quote(f.column)}" for f in self.fields)

    @functools.cached_property
    def _converters(self) -> tuple[tuple[int, tuple[tuple[Converter, ...], object]], ...]:
        # As the SQL compiler does for each selected column: the backend's converters, then the field's.
        found = []
        for index, field in enumerate(self.fields):
            col = field.get_col(self.alias)
            chain = tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))
            if chain:
                found.append((index, (chain, col)))
        return tuple(found)

    def instance(self, row: Sequence[object], start: int = 0) -> models.Model | None:
        """The instance in ``row[start:start + width]``; None when its primary key is NULL (an outer join missed)."""
        values = list(row[start:start + self.width])
        if values[self._pk_index] is None:
            return None
        # The thread's connection itself, not the proxy (a thread-local lookup per read; fast_insert.py).
        conn = connections[DEFAULT_DB_ALIAS]
        for index, (chain, col) in self._converters:
            value = values[index]
            for convert in chain:
                value = convert(value, col, conn)
            values[index] = value
        return self.model.from_db(conn.alias, self._names, values)

    def select(self, sql: str, params: Sequence[object]) -> list[models.Model]:
        """Instances of the rows of ``sql`` (which selects ``self.columns`` and nothing else)."""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [self.instance(row) for row in cursor.fetchall()]


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    fields = tuple(meta.get_field(name) for name in names)
    if any(not f.concrete or f.primary_key for f in fields):
        raise ValueError(f"{meta.label}: row_update writes concrete, non-key fields")
    sets = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    return f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {quote(meta.pk.column)} = %s", fields  # noqa: S608


def row_update(obj: models.Model, names: Iterable[str], *, where: str = "", params: Sequence[object] = ()) -> int:
    """UPDATE ``names`` of ``obj`` (as ``obj.save(update_fields=names)`` would) and return the rows changed.

    Without ``where`` the row must exist (0 rows raises, as ``save`` does); with it (SQL ``AND``-ed to the
    key, its values in ``params``), a conditional update whose row count the caller checks.
    """
    names = tuple(dict.fromkeys(names))
    sql, fields = _update_sql(type(obj), names)
    obj._prepare_related_fields_for_save(operation_name="row_update", fields=fields)
    values = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} AND ({where})" if where else sql, [*values, obj.pk, *params])
        changed = cursor.rowcount
    if not where and changed != 1:
        raise DatabaseError(f"{obj._meta.label} {obj.pk}: the update did not affect any rows")
    return changed


def db_value(model: type[models.Model], name: str, value: object) -> object:
    """``value`` as a query parameter for ``model.name`` (a UUID on SQLite is hex text, ...)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)


@functools.cache
def _table_reader(model: type[models.Model]) -> RowReader:
    return RowReader(model, "t")


def rows_where(model: type[models.Model], where: str, params: Sequence[object] = (), *, order_by: str = "",
               limit: int | None = None) -> list[models.Model]:
    """Whole rows of ``model`` matching ``where`` (SQL over its columns), as instances: a prebuilt
    ``Model.objects.filter(...).order_by(...)[:limit]`` for hot paths."""
    reader = _table_reader(model)
    sql = f"SELECT {reader.columns} FROM {quote(model._meta.db_table)} {quote('t')} WHERE {where}"  # noqa: S608
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return reader.select(sql, params)
