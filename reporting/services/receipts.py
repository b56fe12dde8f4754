"""Recording the proof of a submission, in the transaction that marks the report delivered."""
from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.db import transaction

from incidents.actors import Actor
from incidents.models.fast_insert import rows_insert
from reporting.choices import ReportStatus
from reporting.models import DeliveryAttempt, Destination, Receipt, Report
from reporting.models.receipt import RESPONSE_EXCERPT_CHARS
from reporting.services.reports import report_set_status
from reporting.transports.base import SendResult


def public_address(address: str) -> str:
    """The address as a receipt may show it: a URL loses any user:password and its query and fragment
    (webhook URLs sometimes carry a token there); a mailbox is kept as it is."""
    parts = urlsplit(address)
    if not parts.scheme or not parts.netloc:
        return address
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _answer(result: SendResult) -> str:
    # The raw answer when the transport kept one (webhook body, TAXII status); otherwise what it made of it.
    text = result.response_excerpt or (json.dumps(result.receipt, sort_keys=True) if result.receipt else "")
    return text[:RESPONSE_EXCERPT_CHARS]


def receipt_record(*, report: Report, attempt: DeliveryAttempt, destination: Destination, result: SendResult,
                   actor: Actor, delivered_at: datetime, release: dict) -> Receipt:
    """Write the report's receipt and mark it delivered (late if past its deadline): one audit event.

    Caller's transaction, with the incident and the report locked (delivery's ``_record``). ``release``
    holds the queue columns the delivery clears with the same UPDATE.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("receipt_record runs inside the caller's transaction")
    receipt = Receipt(
        report=report, attempt=attempt, destination=destination, authority=destination.authority.name,
        transport=destination.transport, address=public_address(destination.address), message_id=report.public_id,
        payload_sha256=report.payload_sha256, payload_size=len(report.payload.encode("utf-8")),
        signing_key_id=report.signing_key_id, via_fallback=attempt.via_fallback, sent_at=attempt.started_at,
        delivered_at=delivered_at, response_status=result.http_status, response_excerpt=_answer(result),
    )
    rows_insert([receipt])  # new and append-only: Receipt.save() adds nothing on insert
    late = report.due_at is not None and delivered_at > report.due_at
    report_set_status(
        report=report, actor=actor, to=ReportStatus.DELIVERED, action="report_delivered",
        fields={"delivered_at": delivered_at, "receipt": result.receipt or {}, "late": late,
                "next_attempt_at": None, "last_error": "", **release},
        audit_changes={"receipt": {"payload_sha256": receipt.payload_sha256, "address": receipt.address,
                                   "transport": receipt.transport, "response_status": receipt.response_status}},
    )
    return receipt
