"""The active reporting rules, kept in process memory for as long as nobody changes them.

Every incident filed runs the obligations hook, which needs the active rules, their stages and
destinations: two ORM queries, about a tenth of the intake path's CPU (docs/performance.md). Rules
change a few times a year. So each process keeps the last rule set it loaded, tagged with the
rule-set version that PostgreSQL triggers bump on every write to rules, stages or destinations
(migration ``reporting.0006_rule_set_version_triggers``), and reads only that version per call: one
primary-key lookup in raw SQL, inside the caller's transaction.

Why this is exact, not just "fresh enough": the version is read before the rules and again after
them, and the rules are kept only if it did not move, so a kept rule set is always the one that
version stands for. Versions come from a sequence and never repeat, so a rule set loaded inside a
transaction that changed rules and then rolled back is tagged with a number no one else will read.
On other databases (SQLite under ``make run``) there is no version and every call loads afresh.

Callers must treat what they get as read-only: the same objects serve every thread of the process.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import connection

T = TypeVar("T")
_VERSION_SQL = "SELECT version FROM reporting_rule_set_version WHERE id = 1"
_cached: tuple[int, object] | None = None  # (version, rule set); replaced whole, never mutated


def rule_set_version() -> int | None:
    """The committed (or this transaction's own) rule-set version; None where there is none."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL)
        row = cursor.fetchone()
    return row[0] if row else None


def rule_set_cached(load: Callable[[], T]) -> T:
    """``load()``'s rule set for the current version: from memory when the version has not moved."""
    global _cached  # noqa: PLW0603  (one entry per process, swapped atomically)
    version = rule_set_version()
    if version is None:
        return load()
    cached = _cached
    if cached is not None and cached[0] == version:
        return cached[1]  # type: ignore[return-value]
    rules = load()
    if rule_set_version() == version:
        _cached = (version, rules)
    return rules


def rule_set_cache_clear() -> None:
    """Forget the rule set held by this process (the next call loads it again)."""
    global _cached  # noqa: PLW0603
    _cached = None
