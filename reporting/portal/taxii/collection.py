"""The objects of an authority's TAXII collection, derived from the frozen documents delivered to it.

The collection holds every STIX object of every report delivered to the authority, as the TAXII
transport would have built it (reporting.packaging.stix.bundle_for over the frozen payload, the
report's id as message id, the destination's TLP floor): never the live incident. One object version
(id, version) appears once, however many reports carried it: the lab's identity, the TLP marking
definitions and the ATLAS / ATT&CK attack patterns are shared by most reports, and an incident's
objects by its stages. Its ``date_added`` is the delivery time of the first report that carried it.

The index is rebuilt per request from the scope selector; the mapping of each report (a pure function
of immutable bytes) is cached under the payload's SHA-256, so a request costs one query for the report
list, one cache round trip, and a bundle build only for reports never seen before.
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
# Bump when the mapping changes, so no cached object list from the old mapping is served.
CACHE_VERSION = "v1"


@dataclass(frozen=True)
class Entry:
    """One object version in the collection."""

    date_added: datetime
    object_id: str
    version: str
    version_time: datetime
    obj: dict
    report: Report

    @property
    def sort_key(self) -> tuple:
        return (self.date_added, self.object_id, self.version)


def collection_entries(*, reviewer: Reviewer) -> list[Entry]:
    """Every object version of the reviewer's authority's collection, in (date_added, id, version) order."""
    reports = list(reviewer_feed_reports(reviewer=reviewer))
    objects_by_report = _objects_of(reviewer, reports)
    seen: dict[tuple[str, str], Entry] = {}
    for report in reports:  # delivery order: the first report carrying an object version adds it
        for obj in objects_by_report.get(report.pk, []):
            version = obj.get("modified") or obj.get("created")
            key = (obj["id"], version)
            if key not in seen:
                seen[key] = Entry(date_added=report.delivered_at, object_id=obj["id"], version=version,
                                  version_time=parse_timestamp(version), obj=obj, report=report)
    return sorted(seen.values(), key=lambda entry: entry.sort_key)


def _cache_key(report: Report) -> str:
    return f"mir:taxii:{CACHE_VERSION}:{report.public_id}:{report.payload_sha256}:{report.destination.tlp}"


def _objects_of(reviewer: Reviewer, reports: list[Report]) -> dict[int, list[dict]]:
    keys = {report.pk: _cache_key(report) for report in reports}
    cached = cache.get_many(list(keys.values()))
    found = {pk: cached[key] for pk, key in keys.items() if key in cached}
    missing = [report for report in reports if report.pk not in found]
    if missing:
        payloads = reviewer_feed_payloads(reviewer=reviewer, report_ids=[report.pk for report in missing])
        fresh = {}
        for report in missing:
            found[report.pk] = _map(report, payloads.get(report.pk, ""))
            fresh[keys[report.pk]] = found[report.pk]
        cache.set_many(fresh, timeout=CACHE_SECONDS)
    return found


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
