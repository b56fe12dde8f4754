"""The objects of an authority's TAXII collection, derived from the frozen documents delivered to it.

The collection holds every STIX object of every report delivered to the authority, as the TAXII
transport would have built it (reporting.packaging.stix.bundle_for over the frozen payload, the
report's id as message id, the destination's TLP floor): never the live incident. One object version
(id, version) appears once, however many reports carried it: the lab's identity, the TLP marking
definitions and the ATLAS / ATT&CK attack patterns are shared by most reports, and an incident's
objects by its stages. Its ``date_added`` is the delivery time of the first report that carried it.

The index is rebuilt per request from the scope selector. The mapping of a report is a pure function of
immutable bytes, so it is cached under the payload's SHA-256, in two parts: a small outline per report
(id, version, type of each object), which every request reads to filter, order and page; and the full
objects, read only for the reports a page actually shows (each report object carries the whole signed
payload, so the full lists are far larger than the outlines).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache

from reporting.models import Report
from reporting.packaging.stix import bundle_for
from reporting.portal.models import Reviewer
from reporting.portal.selectors import reviewer_feed_payloads, reviewer_feed_reports
from reporting.portal.taxii.timestamps import parse_timestamp

logger = logging.getLogger(__name__)
CACHE_SECONDS = 7 * 24 * 3600
# Bump when the mapping changes, so nothing mapped the old way is served.
CACHE_VERSION = "v1"


@dataclass(frozen=True)
class Entry:
    """One object version in the collection (its object is fetched by entry_objects)."""

    date_added: datetime
    object_id: str
    version: str
    version_time: datetime
    type: str
    spec_version: str
    report: Report
    position: int  # index in the report's object list

    @property
    def sort_key(self) -> tuple:
        return (self.date_added, self.object_id, self.version)


def collection_entries(*, reviewer: Reviewer) -> list[Entry]:
    """Every object version of the reviewer's authority's collection, in (date_added, id, version) order."""
    reports = list(reviewer_feed_reports(reviewer=reviewer))
    outlines = _cached(reviewer, reports, part="outline")
    seen: dict[tuple[str, str], Entry] = {}
    for report in reports:  # delivery order: the first report carrying an object version adds it
        for position, (object_id, version, version_time, kind, spec) in enumerate(outlines.get(report.pk, [])):
            if (object_id, version) not in seen:
                seen[(object_id, version)] = Entry(
                    date_added=report.delivered_at, object_id=object_id, version=version, version_time=version_time,
                    type=kind, spec_version=spec, report=report, position=position)
    return sorted(seen.values(), key=lambda entry: entry.sort_key)


def entry_objects(*, reviewer: Reviewer, entries: list[Entry]) -> list[dict]:
    """The STIX objects of some entries (a page), in their order."""
    reports = list({entry.report.pk: entry.report for entry in entries}.values())
    objects = _cached(reviewer, reports, part="objects")
    return [objects[entry.report.pk][entry.position] for entry in entries]


def _cache_key(report: Report, part: str) -> str:
    return f"mir:taxii:{CACHE_VERSION}:{part}:{report.public_id}:{report.payload_sha256}:{report.destination.tlp}"


def _cached(reviewer: Reviewer, reports: list[Report], *, part: str) -> dict[int, list]:
    keys = {report.pk: _cache_key(report, part) for report in reports}
    hits = cache.get_many(list(keys.values()))
    found = {pk: hits[key] for pk, key in keys.items() if key in hits}
    missing = [report for report in reports if report.pk not in found]
    if missing:
        payloads = reviewer_feed_payloads(reviewer=reviewer, report_ids=[report.pk for report in missing])
        fresh = {}
        for report in missing:
            objects = _map(report, payloads.get(report.pk, ""))
            both = {"objects": objects, "outline": _outline(objects)}
            found[report.pk] = both[part]
            fresh.update({_cache_key(report, name): value for name, value in both.items()})
        cache.set_many(fresh, timeout=CACHE_SECONDS)
    return found


def _outline(objects: list[dict]) -> list[tuple]:
    rows = []
    for obj in objects:
        version = obj.get("modified") or obj.get("created")
        rows.append((obj["id"], version, parse_timestamp(version), obj["type"], obj.get("spec_version", "2.1")))
    return rows


def _map(report: Report, payload: str) -> list[dict]:
    """The objects the TAXII transport would have posted for this report ([] if it has no STIX form)."""
    try:
        bundle = bundle_for(json.loads(payload), message_id=str(report.public_id), tlp_floor=report.destination.tlp,
                            payload=payload.encode("utf-8"))
    except ValueError as exc:
        # Not expected for a frozen document; the report stays readable through the API and the portal.
        logger.warning("report %s has no STIX form: %s", report.public_id, exc)
        return []
    return bundle["objects"]
