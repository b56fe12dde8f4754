"""TAXII 2.1: the report, as a STIX 2.1 bundle, added to an authority's collection.

``endpoint.address`` is the collection URL (``…/<api-root>/collections/<id>/``), with HTTP basic auth
from ``endpoint.username`` / ``endpoint.secret``. The bundle is derived from the frozen document
(reporting.packaging.stix), so every retry posts the same objects with the same ids and versions;
the report object also carries the frozen payload, so the Ed25519 signature can be checked from TAXII.

Outcome classification (the delivery service decides what happens next):
- status resource ``complete`` and every object stored: delivered; the status resource is the receipt.
  A per-object failure for an object the collection already holds at that exact version (a retry after
  a lost answer, the shared TLP marking or lab identity) is no failure: TAXII servers commonly refuse
  duplicates (medallion answers "Unable to process object"), so we check the collection's manifest
  instead of trusting a message text.
- status still ``pending`` when the time is up: transient; the retry re-posts the same objects.
- timeouts, connection errors, 5xx, 408/425/429, a server answering malformed TAXII: transient.
- 401/403, any other 4xx, redirects, a collection we may not write, a server that is not TAXII 2.1,
  objects rejected and not present, a document that cannot become valid STIX: permanent.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from taxii2client.common import _HTTPConnection
from taxii2client.exceptions import AccessError, InvalidJSONError, TAXIIServiceException
from taxii2client.exceptions import ValidationError as TaxiiValidationError
from taxii2client.v21 import Collection, Status

from reporting.choices import AttemptOutcome
from reporting.packaging.stix import bundle_for, validate_bundle
from reporting.transports.base import Endpoint, FrozenReport, SendResult

EXCERPT_CHARS = 2000
USER_AGENT = "mir-taxii/1"
CONNECT_TIMEOUT_SECONDS = 5.0
TRANSIENT_4XX = frozenset({408, 425, 429})
# Ids per manifest query: keeps the query string far below common URL length limits.
MANIFEST_BATCH = 40
PAGE_LIMIT = 100


class OutOfTime(requests.exceptions.Timeout):
    """The send's overall time budget is spent (a Timeout, so it is classified like one)."""


class TaxiiTransport:
    def send(self, report: FrozenReport, endpoint: Endpoint, *, timeout_seconds: float) -> SendResult:
        deadline = time.monotonic() + timeout_seconds
        address = urlsplit(endpoint.address)
        if address.scheme not in ("http", "https") or not address.hostname:
            # No retry can fix a malformed address; requests would call it a (transient) RequestException.
            return _result(AttemptOutcome.PERMANENT, "InvalidURL", f"not an http(s) URL: {endpoint.address!r}")
        try:
            bundle = bundle_for(report.document, message_id=report.message_id, tlp_floor=endpoint.tlp,
                                payload=report.payload)
            validate_bundle(bundle)
        except ValueError as exc:
            return _result(AttemptOutcome.PERMANENT, "StixMappingError", str(exc))
        objects = bundle["objects"]
        details = {"collection_url": endpoint.address, "bundle_id": bundle["id"], "object_count": len(objects),
                   "report_object_id": objects[-1]["id"]}
        # Sorted keys and no spaces: the same document gives the same bytes on every attempt.
        body = json.dumps({"objects": objects}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        session = BoundedSession(deadline)
        if endpoint.username or endpoint.secret:
            session.auth = requests.auth.HTTPBasicAuth(endpoint.username, endpoint.secret)
        connection = _HTTPConnection(version="2.1", user_agent=USER_AGENT)
        connection.session.close()
        connection.session = session
        try:
            with Collection(endpoint.address, conn=connection) as collection:
                status = collection.add_objects(body.encode("utf-8"), wait_for_completion=False)
                details["status_url"] = status.url
                status = _wait_until_final(status, deadline)
                return _judge(collection, objects, status, session.post_status, details)
        except requests.HTTPError as exc:
            return _http_failure(exc, details)
        except requests.RequestException as exc:
            # Timeouts, refused or reset connections, TLS failures, our own time budget: all may clear.
            return _result(AttemptOutcome.TRANSIENT, type(exc).__name__, str(exc), details)
        except AccessError as exc:
            return _result(AttemptOutcome.PERMANENT, "TaxiiAccessDenied", str(exc), details)
        except (InvalidJSONError, TaxiiValidationError) as exc:
            # A TAXII server answering nonsense (e.g. a 202 with a broken status): the objects may or may
            # not be stored; re-posting them is safe, so retry and let the escalations tell people.
            return _result(AttemptOutcome.TRANSIENT, type(exc).__name__, str(exc), details)
        except TAXIIServiceException as exc:  # e.g. not a TAXII 2.1 media type: a wrong address
            return _result(AttemptOutcome.PERMANENT, "NotTaxii21", str(exc), details)


class BoundedSession(requests.Session):
    """Every request gets the time left as its timeout (requests has no session-wide default) and
    redirects are never followed: a report must not go to an address nobody configured."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self.post_status: int | None = None

    def request(self, method, url, *args, **kwargs):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise OutOfTime(f"time budget spent before {method} {url}")
        kwargs["timeout"] = (min(CONNECT_TIMEOUT_SECONDS, remaining), remaining)
        kwargs["allow_redirects"] = False
        response = super().request(method, url, *args, **kwargs)
        if method.upper() == "POST":
            self.post_status = response.status_code
        if 300 <= response.status_code < 400:
            raise requests.HTTPError(f"{response.status_code} redirect to {response.headers.get('location', '?')} "
                                     "not followed", response=response)
        return response


def _wait_until_final(status: Status, deadline: float) -> Status:
    """Poll the status resource until it is complete or the time is up (taxii2client's own wait takes
    whole seconds and may sleep past the deadline)."""
    delay = 0.2
    while status.status != "complete":
        remaining = deadline - time.monotonic()
        if remaining <= 0.2:  # too little left for a useful request
            break
        time.sleep(min(delay, remaining - 0.1))
        delay = min(delay * 2, 2.0)
        try:
            status.refresh()
        except OutOfTime:
            break
    return status


def _judge(collection: Collection, objects: list[dict], status: Status, http_status: int | None,
           details: dict) -> SendResult:
    receipt = _receipt(status, details)
    excerpt = json.dumps(receipt, sort_keys=True)
    if status.status != "complete":
        return SendResult(outcome=AttemptOutcome.TRANSIENT, http_status=http_status, error_class="TaxiiStatusPending",
                          response_excerpt=excerpt[:EXCERPT_CHARS], details={**details, "status": receipt})
    if not status.failure_count and not status.pending_count:
        return SendResult(outcome=AttemptOutcome.DELIVERED, http_status=http_status, receipt=receipt,
                          response_excerpt=excerpt[:EXCERPT_CHARS], details=details)
    confirmed = set(receipt["successes"])
    unconfirmed = [obj for obj in objects if obj["id"] not in confirmed]
    try:
        present = _present(collection, unconfirmed)
    except AccessError:
        # A write-only collection: we cannot tell "already there" from "refused", so a person must look.
        return SendResult(outcome=AttemptOutcome.PERMANENT, http_status=http_status,
                          error_class="TaxiiUnverifiedFailures", response_excerpt=excerpt[:EXCERPT_CHARS],
                          details={**details, "status": receipt})
    missing = sorted(obj["id"] for obj in unconfirmed if obj["id"] not in present)
    receipt["already_present"] = sorted(present)
    excerpt = json.dumps(receipt, sort_keys=True)
    if missing:
        return SendResult(outcome=AttemptOutcome.PERMANENT, http_status=http_status,
                          error_class="TaxiiObjectsRejected", response_excerpt=excerpt[:EXCERPT_CHARS],
                          details={**details, "status": receipt, "missing": missing})
    return SendResult(outcome=AttemptOutcome.DELIVERED, http_status=http_status, receipt=receipt,
                      response_excerpt=excerpt[:EXCERPT_CHARS], details=details)


def _present(collection: Collection, objects: list[dict]) -> set[str]:
    """Ids of the objects the collection holds at exactly the version we sent."""
    wanted = {obj["id"]: obj.get("modified") or obj.get("created") for obj in objects}
    present: set[str] = set()
    ids = sorted(wanted)
    for start in range(0, len(ids), MANIFEST_BATCH):
        batch = ids[start:start + MANIFEST_BATCH]
        # Asking for our versions (not "all") keeps the answer to about one record per id. The same
        # filters and limit go with every page: medallion refuses a "next" whose filters changed.
        query = {"id": batch, "version": sorted({wanted[i] for i in batch if wanted[i]}), "limit": PAGE_LIMIT}
        envelope = collection.get_manifest(**query)
        while True:
            for record in envelope.get("objects", []):
                ours = _version_of(wanted.get(record.get("id")))
                if ours is not None and ours == _version_of(record.get("version")):
                    present.add(record["id"])
            if not (envelope.get("more") and envelope.get("next")):
                break
            envelope = collection.get_manifest(next=envelope["next"], **query)
    return present


def _version_of(value: object) -> datetime | None:
    """Versions compared as instants: servers may reformat the timestamp (precision, offset)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _receipt(status: Status, details: dict) -> dict:
    def ids(entries: list) -> list[str]:
        return [entry.get("id") if isinstance(entry, dict) else entry for entry in entries]

    return {
        "id": status.id, "status": status.status, "request_timestamp": status.request_timestamp,
        "total_count": status.total_count, "success_count": status.success_count,
        "failure_count": status.failure_count, "pending_count": status.pending_count,
        "successes": ids(status.successes), "failures": status.failures, "pendings": ids(status.pendings),
        "status_url": details.get("status_url"), "collection_url": details["collection_url"],
        "bundle_id": details["bundle_id"], "report_object_id": details["report_object_id"],
    }


def _http_failure(exc: requests.HTTPError, details: dict) -> SendResult:
    response = exc.response
    if response is None:
        return _result(AttemptOutcome.TRANSIENT, "HTTPError", str(exc), details)
    code = response.status_code
    transient = code >= 500 or code in TRANSIENT_4XX
    if 300 <= code < 400:
        details = {**details, "location": response.headers.get("location", "")}
    return SendResult(
        outcome=AttemptOutcome.TRANSIENT if transient else AttemptOutcome.PERMANENT, http_status=code,
        error_class=f"HTTP {code}", response_excerpt=(response.text or str(exc))[:EXCERPT_CHARS],
        retry_after_seconds=_retry_after(response.headers.get("retry-after")) if transient else None,
        details={**details, "url": response.url},
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _result(outcome: AttemptOutcome, error_class: str, message: str, details: dict | None = None) -> SendResult:
    return SendResult(outcome=outcome, error_class=error_class, response_excerpt=message[:EXCERPT_CHARS],
                      details=details or {})
