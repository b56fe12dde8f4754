"""What a report sends: the frozen payload once it exists, else a preview built the way the worker builds it.

The preview never freezes anything: it runs inside a savepoint that is always rolled back, so even
a document builder that touched the database (it should not) would leave no trace. It is imported
lazily, so the admin keeps working while packaging is missing or broken, and says so on the page.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from reporting.models import DigestEntry, Report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentView:
    frozen: bool
    pretty_json: str = ""
    sha256: str = ""
    size: int = 0
    signing_key_id: str = ""
    error: str = ""


def _pretty(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def frozen_document(report: Report) -> DocumentView:
    try:
        pretty = _pretty(json.loads(report.payload))
    except ValueError:
        pretty = report.payload  # show the bytes as stored rather than nothing
    return DocumentView(frozen=True, pretty_json=pretty, sha256=report.payload_sha256,
                        size=len(report.payload.encode("utf-8")), signing_key_id=report.signing_key_id)


def preview_document(report: Report) -> DocumentView:
    """Exactly what would be sent if the stage were frozen now (before its signature is added)."""
    try:
        from reporting.packaging.canonical import canonical_bytes
        from reporting.packaging.document import build_document
    except Exception as exc:  # noqa: BLE001  (ImportError, or a module that fails while importing)
        return DocumentView(frozen=False, error=f"The report packaging is not available ({type(exc).__name__}: "
                                                f"{exc}). The report is unaffected; it is built when it is sent.")
    try:
        with transaction.atomic():
            document = build_document(report=report)
            payload = canonical_bytes(document)
            transaction.set_rollback(True)
    except Exception as exc:  # noqa: BLE001  (a preview must never break the page)
        logger.warning("preview of report %s failed", report.pk, exc_info=True)
        return DocumentView(frozen=False, error=f"The preview could not be built: {type(exc).__name__}: {exc}")
    return DocumentView(frozen=False, pretty_json=_pretty(document), sha256=hashlib.sha256(payload).hexdigest(),
                        size=len(payload))


def document_view(report: Report) -> DocumentView:
    return frozen_document(report) if report.frozen_at is not None else preview_document(report)


def digest_incidents_html(report: Report, admin_site_name: str) -> SafeString:
    """The incidents batched into a digest, linked (one query); the document decides which of them it carries."""
    entries = DigestEntry.objects.filter(digest=report).select_related("incident").order_by("incident_id")
    links = format_html_join(
        ", ", '<a href="{}">{}</a> <span class="quiet">({})</span>',
        ((reverse(f"{admin_site_name}:incidents_incident_change", args=[e.incident_id]), e.incident.reference,
          e.incident.severity) for e in entries),
    )
    return format_html("{} — {} incident(s): {}", report.subject, len(entries), links or "none yet")
