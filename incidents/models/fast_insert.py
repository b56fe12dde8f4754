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

``rows_insert_family`` writes a new row and new rows that refer to it (an incident, its parts and its
``created`` audit event) with one statement on PostgreSQL, the children's foreign key filled in the
statement from the parent's ``RETURNING``: each Django cursor ``execute`` costs the app about 0.14 ms
of CPU and a round trip, and filing an incident took five.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

# Field classes (exactly these: a subclass may prepare values differently) whose pre_save is a plain
# attribute read and whose get_db_prep_save returns a value of these types unchanged.
_PASS_THROUGH: dict[type[models.Field], tuple[type, ...]] = {
    models.CharField: (str, type(None)),
    models.TextField: (str, type(None)),
    models.BooleanField: (bool, type(None)),
}
_Column = tuple[models.Field, str, tuple[type, ...]]


@functools.cache
def _table(model: type[models.Model]) -> tuple[str, tuple[_Column, ...]]:
    """The model's quoted table and its columns: every concrete field but the primary key."""
    meta = model._meta
    if meta.pk.column != "id" or not isinstance(meta.pk, models.AutoField | models.BigAutoField):
        raise TypeError(f"{meta.label}: rows_insert needs an auto-incremented primary key")
    fields = tuple(f for f in meta.concrete_fields if not f.primary_key)
    return (
        connection.ops.quote_name(meta.db_table),
        tuple((f, f.attname, _PASS_THROUGH.get(type(f), ())) for f in fields),
    )


@functools.cache
def _insert_sql(model: type[models.Model], rows: int) -> tuple[str, tuple[_Column, ...]]:
    table, columns = _table(model)
    quote = connection.ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(f.column) for f, _, _ in columns)}) "  # noqa: S608
        f"VALUES {', '.join([placeholders] * rows)} RETURNING {quote('id')}"
    )
    return sql, columns


def _check_new(obj: models.Model, model: type[models.Model]) -> None:
    if type(obj) is not model or not obj._state.adding or obj.pk is not None:
        raise ValueError("rows_insert takes new, unsaved rows of one model")


def _append_values(obj: models.Model, columns: Sequence[_Column], conn: BaseDatabaseWrapper, params: list) -> None:
    for field, attname, unchanged in columns:
        value = getattr(obj, attname)
        if type(value) not in unchanged:
            value = field.get_db_prep_save(field.pre_save(obj, True), conn)
        params.append(value)


def _set_saved(objs: Sequence[models.Model], keys: Sequence[int], alias: str) -> None:
    for obj, pk in zip(objs, keys, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = alias


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
        _check_new(obj, model)
        obj._prepare_related_fields_for_save(operation_name="rows_insert")
        _append_values(obj, columns, conn, params)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        keys = cursor.fetchall()
    _set_saved(objs, [pk for (pk,) in keys], conn.alias)


# --- A new row and its children in one statement ------------------------------------------------


@functools.cache
def _parent_link(
    child: type[models.Model], parent: type[models.Model]
) -> tuple[models.ForeignKey, frozenset[models.Field], tuple[_Column, ...]]:
    """The child model's one foreign key to the parent model, its other relations (checked before
    writing) and the columns whose values are sent (all but that foreign key)."""
    links = [f for f in child._meta.concrete_fields if f.many_to_one and f.related_model is parent]
    if len(links) != 1:
        raise TypeError(f"{child._meta.label}: needs exactly one foreign key to {parent._meta.label}")
    link = links[0]
    others = frozenset(
        f for f in (*child._meta.concrete_fields, *child._meta.private_fields) if f.is_relation and f is not link
    )
    return link, others, tuple(c for c in _table(child)[1] if c[0] is not link)


@functools.lru_cache(maxsize=64)  # one text per shape; bodies with unusual part counts come and go
def _family_sql(parent: type[models.Model], shape: tuple[tuple[type[models.Model], int], ...]) -> str:
    quote = connection.ops.quote_name
    table, columns = _table(parent)
    placeholders = ", ".join(["%s"] * len(columns))
    ctes = [
        f"p AS (INSERT INTO {table} ({', '.join(quote(f.column) for f, _, _ in columns)}) "  # noqa: S608
        f"VALUES ({placeholders}) RETURNING id)"
    ]
    keys = ["SELECT 0 AS g, id FROM p"]
    for n, (model, rows) in enumerate(shape, 1):
        table, columns = _table(model)
        link = _parent_link(model, parent)[0]
        # VALUES right inside an INSERT take the target columns' types: no casts, also with
        # server-side binding. The parent's key is an InitPlan, evaluated once.
        row = "(" + ", ".join("(SELECT id FROM p)" if f is link else "%s" for f, _, _ in columns) + ")"  # noqa: S608
        ctes.append(
            f"c{n} AS (INSERT INTO {table} ({', '.join(quote(f.column) for f, _, _ in columns)}) "  # noqa: S608
            f"VALUES {', '.join([row] * rows)} RETURNING id)"
        )
        keys.append(f"SELECT {n}, id FROM c{n}")  # noqa: S608
    # A multi-row INSERT draws its keys from the sequence in the order of its VALUES, so ordering by
    # key gives each group's keys in the order of its rows.
    return f"WITH {', '.join(ctes)} {' UNION ALL '.join(keys)} ORDER BY 1, 2"


def rows_insert_family(parent: models.Model, children: Sequence[Sequence[models.Model]]) -> None:
    """INSERT a new row and its new children, each group of one model, and give them all their keys.

    Every child must already point at ``parent`` (``child.incident = parent``: the foreign key, the
    child model's only one to the parent's model, is filled with the parent's new key in the
    statement). Values and checks are ``rows_insert``'s; after it the children's foreign key holds
    the parent's key, as if the parent had been inserted first. On PostgreSQL it is one statement of
    data-modifying CTEs, so a failing row leaves nothing stored and there is one round trip; SQLite
    has no data-modifying CTEs, so there it is one ``rows_insert`` per model in one transaction, with
    the same result. Every check runs before anything is written.
    """
    model = type(parent)
    _check_new(parent, model)
    parent._prepare_related_fields_for_save(operation_name="rows_insert_family")
    groups = [group for group in children if group]
    shape = tuple((type(group[0]), len(group)) for group in groups)
    links = [_parent_link(child_model, model) for child_model, _ in shape]
    for (child_model, _), group, (link, others, _) in zip(shape, groups, links, strict=True):
        for obj in group:
            _check_new(obj, child_model)
            if link.get_cached_value(obj, None) is not parent:
                raise ValueError(f"rows_insert_family: a {child_model._meta.label} row is not linked to the parent")
            if others:  # an empty set would make Django check every field, the unsaved parent's too
                obj._prepare_related_fields_for_save(operation_name="rows_insert_family", fields=others)
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.vendor != "postgresql":
        with transaction.atomic(savepoint=False):  # all or nothing, as the one statement is
            rows_insert([parent])
            for group in groups:
                rows_insert(group)  # its related-field check copies the parent's new key to the row
        return

    params: list[object] = []
    _append_values(parent, _table(model)[1], conn, params)
    for group, (_, _, columns) in zip(groups, links, strict=True):
        for obj in group:
            _append_values(obj, columns, conn, params)
    with conn.cursor() as cursor:
        cursor.execute(_family_sql(model, shape), params)
        keys = [pk for _, pk in cursor.fetchall()]
    _set_saved([parent], keys[:1], conn.alias)
    start = 1
    for group, (link, _, _) in zip(groups, links, strict=True):
        _set_saved(group, keys[start:start + len(group)], conn.alias)
        for obj in group:
            setattr(obj, link.name, parent)  # the key and the cached parent, as rows_insert's check sets them
        start += len(group)


# The incident INSERT has 61 parameters; filing the benchmark's body (incident, one account, two
# indicators, one evidence item, the audit event: rows_insert_family) has 91, each further part 3-7.
# A new field adds one. psycopg needs room for the widest of the usual ones.
_WIDEST_STATEMENT = 200


def psycopg_cache_wide_statements() -> None:
    """Let psycopg keep the parsed form of statements with up to ``_WIDEST_STATEMENT`` parameters.

    psycopg turns each statement's ``%s`` placeholders into ``$n`` before sending it and keeps the
    result in an LRU cache (128 statements), but not for statements with more than 50 parameters, so
    as not to fill it with ORM bulk INSERTs of varying lengths. The incident INSERT is one fixed text
    with 61 (the filing statement, with the parts, has more), so it was parsed afresh on every
    request: about 0.15 ms, 4 % of filing an incident's CPU. The limit is a module constant of
    psycopg's (``psycopg._queries``), not a documented setting; tests/incidents/test_fast_insert.py
    fails if an upgrade renames it, rather than this silently doing nothing. The cache stays bounded
    at 128 statements.
    """
    try:
        from psycopg import _queries
    except ImportError:  # SQLite, or no psycopg 3
        return
    if hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS"):
        _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, _WIDEST_STATEMENT)
