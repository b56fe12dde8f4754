"""INSERT new rows on the intake path without the ORM's per-call query building.

``save()``/``create()``/``bulk_create()`` build a query object and run the SQL compiler for every
call; for the six INSERTs of one filed incident that was over a third of the API's CPU, more than the
statements cost PostgreSQL (docs/performance.md). ``rows_insert`` writes the same row the ORM would:
the same columns (every concrete field, from the model's metadata, so a new field needs no change
here), the same values (each field's ``pre_save`` for ``auto_now_add``, then ``get_db_prep_save``),
the same checks on related objects, the primary keys set from ``RETURNING``. The SQL text for a model
and a row count is built once per process; with server-side binding psycopg then prepares it.

It is for new rows of models whose ``save()`` adds nothing on insert; like ``bulk_create`` it sends no
model signals (this project uses none). Errors are Django's (``IntegrityError``, ...).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import connection, models


@functools.cache
def _insert_sql(model: type[models.Model], rows: int) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(f for f in meta.concrete_fields if not f.primary_key)
    if meta.pk.column != "id" or not isinstance(meta.pk, models.AutoField | models.BigAutoField):
        raise TypeError(f"{meta.label}: rows_insert needs an auto-incremented primary key")
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES {', '.join([placeholders] * rows)} RETURNING {quote(meta.pk.column)}"
    )
    return sql, fields


def rows_insert(objs: Sequence[models.Model]) -> None:
    """INSERT unsaved instances of one model in one statement and give them their primary keys."""
    if not objs:
        return
    model = type(objs[0])
    sql, fields = _insert_sql(model, len(objs))
    params: list[object] = []
    for obj in objs:
        if type(obj) is not model or not obj._state.adding or obj.pk is not None:
            raise ValueError("rows_insert takes new, unsaved rows of one model")
        obj._prepare_related_fields_for_save(operation_name="rows_insert")
        params.extend(field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall()
    for obj, (pk,) in zip(objs, keys, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias
