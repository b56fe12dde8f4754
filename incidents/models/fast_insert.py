"""INSERT new rows on the intake path without the ORM's per-call query building.

``save()``/``create()``/``bulk_create()`` build a query object and run the SQL compiler for every
call; for the six INSERTs of one filed incident that was over a third of the API's CPU, more than the
statements cost PostgreSQL (docs/performance.md). ``rows_insert`` writes the same row the ORM would:
the same columns (every concrete field, from the model's metadata, so a new field needs no change
here), the same values (each field's ``pre_save`` for ``auto_now_add``, then ``get_db_prep_save``),
the same checks on related objects, the primary keys set from ``RETURNING``. The SQL text for a model
and a row count is built once per process; with server-side binding psycopg then prepares it.

Values of the types a plain text or boolean field stores as they are (a ``str`` for a
``CharField``, ...) skip the field's value preparation, which would return them unchanged: that was
over a tenth of the CPU of writing an incident's 61 columns. Anything else, or any other field class
(subclasses included), goes through ``pre_save`` and ``get_db_prep_save`` as above.

It is for new rows of models whose ``save()`` adds nothing on insert; like ``bulk_create`` it sends no
model signals (this project uses none). Errors are Django's (``IntegrityError``, ...).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connection, connections, models

# Field classes (exactly these: a subclass may prepare values differently) whose pre_save is a plain
# attribute read and whose get_db_prep_save returns a value of these types unchanged.
_PASS_THROUGH: dict[type[models.Field], tuple[type, ...]] = {
    models.CharField: (str, type(None)),
    models.TextField: (str, type(None)),
    models.BooleanField: (bool, type(None)),
}
_Column = tuple[models.Field, str, tuple[type, ...]]


@functools.cache
def _insert_sql(model: type[models.Model], rows: int) -> tuple[str, tuple[_Column, ...]]:
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
    return sql, tuple((f, f.attname, _PASS_THROUGH.get(type(f), ())) for f in fields)


def rows_insert(objs: Sequence[models.Model]) -> None:
    """INSERT unsaved instances of one model in one statement and give them their primary keys."""
    if not objs:
        return
    model = type(objs[0])
    sql, columns = _insert_sql(model, len(objs))
    # The thread's connection itself: every attribute read through the ``connection`` proxy is a
    # thread-local lookup, and the fields' value preparation reads it a hundred times per incident.
    conn = connections[DEFAULT_DB_ALIAS]
    params: list[object] = []
    for obj in objs:
        if type(obj) is not model or not obj._state.adding or obj.pk is not None:
            raise ValueError("rows_insert takes new, unsaved rows of one model")
        obj._prepare_related_fields_for_save(operation_name="rows_insert")
        for field, attname, unchanged in columns:
            value = getattr(obj, attname)
            if type(value) not in unchanged:
                value = field.get_db_prep_save(field.pre_save(obj, True), conn)
            params.append(value)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall()
    for obj, (pk,) in zip(objs, keys, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = conn.alias


# The incident INSERT has 61 parameters; a new field adds one. psycopg needs room for the widest.
_WIDEST_STATEMENT = 100


def psycopg_cache_wide_statements() -> None:
    """Let psycopg keep the parsed form of statements with up to ``_WIDEST_STATEMENT`` parameters.

    psycopg turns each statement's ``%s`` placeholders into ``$n`` before sending it and keeps the
    result in an LRU cache (128 statements), but not for statements with more than 50 parameters, so
    as not to fill it with ORM bulk INSERTs of varying lengths. The incident INSERT is one fixed text
    with 61, so it was parsed afresh on every request: about 0.15 ms, 4 % of filing an incident's
    CPU. The limit is a module constant of psycopg's (``psycopg._queries``), not a documented setting;
    tests/incidents/test_fast_insert.py fails if an upgrade renames it, rather than this silently
    doing nothing. The cache stays bounded at 128 statements.
    """
    try:
        from psycopg import _queries
    except ImportError:  # SQLite, or no psycopg 3
        return
    if hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS"):
        _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, _WIDEST_STATEMENT)
