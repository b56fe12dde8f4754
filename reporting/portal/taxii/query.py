"""TAXII 2.1 query parameters (added_after, limit, next, match[...]) read strictly, and the filters and
paging they select. A value we cannot read is a 400 TAXII error, never a silently wider answer."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.http import QueryDict

from reporting.portal.taxii.collection import Entry
from reporting.portal.taxii.errors import TaxiiError
from reporting.portal.taxii.timestamps import format_timestamp, parse_timestamp

_STIX_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_STIX_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SPEC_VERSION = re.compile(r"^\d\.\d$")
_NEXT_SALT = "mir.taxii.next"
MAX_LIST_VALUES = 100
# Which endpoint takes which parameter (TAXII 2.1, section 3.4 and the endpoint tables).
PAGED = frozenset({"added_after", "limit", "next", "match[spec_version]"})
OBJECTS_PARAMS = PAGED | {"match[id]", "match[type]", "match[version]"}
OBJECT_PARAMS = PAGED | {"match[version]"}
VERSIONS_PARAMS = PAGED


def is_stix_id(text: str) -> bool:
    return bool(_STIX_ID.match(text))


@dataclass(frozen=True)
class TaxiiQuery:
    added_after: datetime | None = None
    limit: int = 100
    after: tuple | None = None  # the position a `next` token carries
    ids: frozenset[str] = field(default_factory=frozenset)
    types: frozenset[str] = field(default_factory=frozenset)
    versions: tuple[str, ...] = ("last",)
    spec_versions: frozenset[str] = field(default_factory=frozenset)


def _bad(name: str, message: str) -> TaxiiError:
    return TaxiiError(400, "Bad query parameter", f"{name}: {message}")


def _one(params: QueryDict, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise _bad(name, "give it once (list values are comma-separated)")
    if values and ("\x00" in values[0] or len(values[0]) > 10_000):
        raise _bad(name, "not a readable value")
    return values[0] if values else None


def _items(params: QueryDict, name: str, pattern: re.Pattern, what: str) -> frozenset[str]:
    raw = _one(params, name)
    if raw is None:
        return frozenset()
    items = raw.split(",")
    if len(items) > MAX_LIST_VALUES:
        raise _bad(name, f"at most {MAX_LIST_VALUES} values")
    for item in items:
        if not pattern.match(item):
            raise _bad(name, f"{item!r} is not {what}")
    return frozenset(items)


def parse_query(params: QueryDict, *, allowed: frozenset[str], default_versions: tuple[str, ...] = ("last",)
                ) -> TaxiiQuery:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise _bad(unknown[0], f"not a parameter of this endpoint (accepted: {', '.join(sorted(allowed))})")
    added_after = _one(params, "added_after")
    if added_after is not None:
        try:
            added_after = parse_timestamp(added_after)
        except ValueError as exc:
            raise _bad("added_after", str(exc)) from None
    maximum = settings.MIR_REVIEWER_API_MAX_PAGE
    limit = _one(params, "limit")
    if limit is not None and not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= maximum):
        raise _bad("limit", f"a whole number from 1 to {maximum}")
    token = _one(params, "next")
    after = _decode_next(token) if token is not None else None
    versions = default_versions
    raw_versions = _one(params, "match[version]")
    if raw_versions is not None:
        versions = tuple(raw_versions.split(","))
        for item in versions:
            if item not in ("first", "last", "all"):
                try:
                    parse_timestamp(item)
                except ValueError:
                    raise _bad("match[version]", f"{item!r} is not first, last, all or a timestamp") from None
    return TaxiiQuery(
        added_after=added_after, limit=int(limit) if limit else maximum, after=after,
        ids=_items(params, "match[id]", _STIX_ID, "a STIX id"),
        types=_items(params, "match[type]", _STIX_TYPE, "a STIX type"),
        versions=versions,
        spec_versions=_items(params, "match[spec_version]", _SPEC_VERSION, "a spec version such as 2.1"),
    )


def _decode_next(token: str) -> tuple:
    try:
        data = signing.loads(token, salt=_NEXT_SALT)
        position = (parse_timestamp(data["a"]), str(data["i"]), str(data["v"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise _bad("next", "not a value this server gave out; pass `next` exactly as received") from None
    return position


def _encode_next(entry: Entry) -> str:
    return signing.dumps({"a": format_timestamp(entry.date_added), "i": entry.object_id, "v": entry.version},
                         salt=_NEXT_SALT)


def select(entries: list[Entry], query: TaxiiQuery) -> list[Entry]:
    """Filter by id, type, spec version and version (over the whole collection), then by added_after."""
    chosen = [entry for entry in entries
              if (not query.ids or entry.object_id in query.ids)
              and (not query.types or entry.type in query.types)
              and (not query.spec_versions or entry.spec_version in query.spec_versions)]
    chosen = _by_version(chosen, query.versions)
    if query.added_after is not None:
        chosen = [entry for entry in chosen if entry.date_added > query.added_after]
    return chosen


def _by_version(entries: list[Entry], versions: tuple[str, ...]) -> list[Entry]:
    if "all" in versions:
        return entries
    by_id: dict[str, list[Entry]] = {}
    for entry in entries:
        by_id.setdefault(entry.object_id, []).append(entry)
    exact = set()
    for item in versions:
        if item not in ("first", "last"):
            exact.add(parse_timestamp(item))
    keep = set()
    for group in by_id.values():
        ordered = sorted(group, key=lambda entry: entry.version_time)
        if "first" in versions:
            keep.add(id(ordered[0]))
        if "last" in versions:
            keep.add(id(ordered[-1]))
        keep.update(id(entry) for entry in group if entry.version_time in exact)
    return [entry for entry in entries if id(entry) in keep]


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    more: bool
    next: str | None


def paginate(entries: list[Entry], query: TaxiiQuery) -> Page:
    """Keyset paging on (date_added, id, version): objects added meanwhile never shift a page."""
    if query.after is not None:
        entries = [entry for entry in entries if entry.sort_key > query.after]
    page = entries[: query.limit]
    more = len(entries) > query.limit
    return Page(entries=page, more=more, next=_encode_next(page[-1]) if more else None)
