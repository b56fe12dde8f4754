"""Delivering one report: claim it with a lease, freeze it once, send it outside any transaction,
record the attempt, and decide what happens next. Called by the ``deliver_report`` task."""
from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.models import Incident
from incidents.models.fast_insert import rows_insert
from incidents.models.fast_rows import db_value, quote, row_update
from reporting.backoff import next_attempt_at
from reporting.choices import AttemptOutcome, EscalationLevel, ReportStatus
from reporting.models import DeliveryAttempt, Destination, Report
from reporting.obligations import delivery_starts_clocks
from reporting.packaging.document import PackagingRefused
from reporting.services.delivery_rows import (
    destination_share_locked,
    incident_lock_for_report,
    report_locked_with_relations,
    row_locked,
)
from reporting.services.escalation import escalation_raise
from reporting.services.obligations import INCIDENT_SYNC_FIELDS, active_rules, obligations_sync
from reporting.services.receipts import receipt_record
from reporting.services.reports import report_set_status
from reporting.transports import transport_for
from reporting.transports.base import Endpoint, FrozenReport, SendResult

logger = logging.getLogger(__name__)
SYSTEM = Actor.system("delivery")


@dataclass(frozen=True)
class DeliveryOutcome:
    report_id: int
    outcome: str  # "delivered", "transient", "permanent", or "skipped" (not ours to send now)


def report_claim(
    *, report_id: int, lease_token: uuid.UUID | None = None, now: datetime | None = None
) -> uuid.UUID | None:
    """Take the report for sending: a conditional UPDATE that succeeds for exactly one worker.

    A task enqueued by the sweeper carries the lease token the sweeper set; the fast path carries none
    and can only take an unleased report. A lease that ran out (a worker died mid-send) is free again.
    """
    now = now or timezone.now()
    mine = uuid.uuid4()
    # Only the lease columns of this row are written (row_update names them); the rest is not read.
    lease = Report(pk=report_id, lease_token=mine,
                   lease_expires_at=now + timedelta(seconds=settings.MIR_DELIVERY_LEASE_SECONDS))
    where, params = _claim_condition(lease_token, now)
    taken = row_update(lease, ["lease_token", "lease_expires_at", "updated_at"], where=where, params=params)
    return mine if taken == 1 else None


def report_freeze(*, report_id: int) -> Report:
    """Build, canonicalise and sign the document once; every retry sends these bytes."""
    with transaction.atomic():
        # The incident first, as everywhere; then the report, read with what the document needs.
        incident_lock_for_report(report_id)
        report = _report_for_freeze(report_id)
        if report.frozen_at is None:
            fields = _freeze_fields(report)
            report.save(update_fields=[*fields, "updated_at"])
    return report


def report_claim_frozen(*, report_id: int, lease_token: uuid.UUID | None = None,
                        now: datetime | None = None) -> tuple[uuid.UUID | None, Report | None, Exception | None]:
    """Claim and (at first send) freeze in one transaction: (lease, report, packaging refusal).

    Delivery's hot path: one commit instead of two. The incident and the report are row-locked first (in
    the order every path uses), so the claimability read below cannot change before the conditional
    UPDATE, which still takes the lease only where the sweeper's query would, its row count checked. A
    report that may not be packaged for its destination is claimed all the same (the refusal is returned)
    so that the caller records the permanent failure under its lease.
    """
    now = now or timezone.now()
    with transaction.atomic():
        incident_lock_for_report(report_id)
        report = _report_for_freeze(report_id, missing_ok=True)
        if report is None or not _claimable(report, lease_token, now):
            return None, None, None
        fields: dict = {}
        refused: Exception | None = None
        if report.frozen_at is None:
            try:
                fields = _freeze_fields(report)
            except PackagingRefused as exc:
                refused = exc
        mine = uuid.uuid4()
        report.lease_token = mine
        report.lease_expires_at = now + timedelta(seconds=settings.MIR_DELIVERY_LEASE_SECONDS)
        where, params = _claim_condition(lease_token, now)
        taken = row_update(report, ["lease_token", "lease_expires_at", *fields, "updated_at"], where=where,
                           params=params)
        if taken != 1:
            return None, None, None
    return mine, report, refused


@functools.cache
def _claim_sql() -> str:
    q = quote
    return (f"{q('status')} = %s AND {q('next_attempt_at')} <= %s AND ({q('lease_expires_at')} IS NULL "
            f"OR {q('lease_expires_at')} < %s OR {q('lease_token')} = %s)")


def _claim_condition(lease_token: uuid.UUID | None, now: datetime) -> tuple[str, list]:
    """Who may take the report (pending, due, and unleased, its lease run out, or leased to ``lease_token``),
    as the claim's conditional UPDATE checks it; ``_claimable`` reads the same under the row lock."""
    at = db_value(Report, "next_attempt_at", now)
    token = db_value(Report, "lease_token", lease_token) if lease_token is not None else None
    return _claim_sql(), [str(ReportStatus.PENDING), at, at, token]


def _claimable(report: Report, lease_token: uuid.UUID | None, now: datetime) -> bool:
    """The claim's condition, read under the row lock (the UPDATE re-checks it in SQL)."""
    if report.status != ReportStatus.PENDING or report.next_attempt_at is None or report.next_attempt_at > now:
        return False
    free = report.lease_expires_at is None or report.lease_expires_at < now
    return free or (lease_token is not None and report.lease_token == lease_token)


def _report_for_freeze(report_id: int, *, missing_ok: bool = False) -> Report | None:
    # The incident row is already locked by the caller: only the report is locked here, so the
    # destination, rule and stage read with it are not.
    report = report_locked_with_relations(report_id)
    if report is None and not missing_ok:
        raise Report.DoesNotExist(report_id)
    return report


def _freeze_fields(report: Report) -> dict:
    """Freeze ``report`` in memory and return the columns to write with it."""
    from reporting.signing import freeze

    # The destination (pseudonym key, disclosure, TLP) is read again under a share lock: no change to it
    # can commit during the freeze (destination_update waits), while freezes of other reports to the same
    # authority do not queue behind each other on an exclusive row lock.
    locked = destination_share_locked(report.destination_id)
    if locked.authority_id == report.destination.authority_id:
        # The authority row read with the report (its name goes into the document) still applies.
        locked.authority = report.destination.authority
    report.destination = locked
    payload, digest, key_id, signature = freeze(report)
    fields = {"payload": payload.decode("utf-8"), "payload_sha256": digest, "signing_key_id": key_id,
              "signature": signature, "frozen_at": timezone.now(),
              **_sent_columns(json.loads(payload)["document"])}
    for name, value in fields.items():
        setattr(report, name, value)
    return fields


def _sent_columns(document: dict) -> dict[str, str]:
    """What the reviewers' portal filters on, as sent (see Report.sent_*)."""
    identity, classification = document.get("identity") or {}, document.get("classification") or {}
    return {
        "sent_reference": str(identity.get("incident_reference") or "")[:40],
        "sent_title": str(identity.get("title") or "")[:300],
        "sent_category": str(classification.get("category") or "")[:32],
        "sent_severity": str(classification.get("severity") or "")[:16],
    }


def _endpoint_for(report: Report, now: datetime) -> tuple[Destination, bool]:
    """The primary destination, or its fallback when the primary keeps failing and the deadline is close."""
    primary = report.destination
    fallback = primary.fallback
    if fallback is None or not fallback.is_active or report.due_at is None:
        return primary, False
    close = report.due_at - now <= timedelta(seconds=settings.MIR_FALLBACK_THRESHOLD_SECONDS)
    last = report.attempts.order_by("-number").first()
    primary_failing = last is not None and last.outcome != AttemptOutcome.DELIVERED and not last.via_fallback
    return (fallback, True) if close and primary_failing else (primary, False)


def _send(report: Report, destination: Destination) -> tuple[SendResult, int]:
    frozen = FrozenReport(
        message_id=str(report.public_id), payload=report.payload.encode("utf-8"),
        document=json.loads(report.payload)["document"], payload_sha256=report.payload_sha256,
        stage_name=report.stage_name, stage_kind=report.stage_kind, sequence=report.sequence,
    )
    endpoint = Endpoint(transport=destination.transport, address=destination.address, username=destination.username,
                        secret=destination.get_secret(), tlp=destination.tlp)
    started = time.monotonic()
    try:
        result = transport_for(destination.transport).send(
            frozen, endpoint, timeout_seconds=settings.MIR_DELIVERY_TIMEOUT_SECONDS
        )
    except Exception as exc:  # noqa: BLE001  (a transport bug must not lose the report: retry and tell)
        logger.exception("transport %s raised for report %s", destination.transport, report.pk)
        result = SendResult(outcome=AttemptOutcome.TRANSIENT, error_class=type(exc).__name__,
                            response_excerpt=str(exc)[:2000])
    return result, int((time.monotonic() - started) * 1000)


def report_deliver(*, report_id: int, lease_token: uuid.UUID | None = None) -> DeliveryOutcome:
    now = timezone.now()
    mine, report, refused = report_claim_frozen(report_id=report_id, lease_token=lease_token, now=now)
    if mine is None:
        return DeliveryOutcome(report_id, "skipped")
    if refused is not None:
        # The document must not be built for this destination (e.g. CHILD_SAFETY to a normal one):
        # a permanent failure that a person sees at once, never a retry loop.
        result = SendResult(outcome=AttemptOutcome.PERMANENT, error_class=type(refused).__name__,
                            response_excerpt=str(refused)[:2000])
        return _record(claimed=report, result=result, started_at=timezone.now(), duration_ms=0,
                       destination=report.destination, via_fallback=False)
    destination, via_fallback = _endpoint_for(report, now)
    started_at = timezone.now()
    # No transaction is open here: the HTTP call never holds a database lock.
    result, duration_ms = _send(report, destination)
    return _record(claimed=report, result=result, started_at=started_at, duration_ms=duration_ms,
                   destination=destination, via_fallback=via_fallback)


# What the record re-reads of the report under its lock: what another worker or a person may have changed
# since the claim (the rest of the claimed row is frozen with the document).
_RECORD_FIELDS = ("id", "status", "attempt_count", "due_at", "next_attempt_at", "lease_token", "lease_expires_at")


def _record(*, claimed: Report, result: SendResult, started_at: datetime, duration_ms: int,
            destination: Destination, via_fallback: bool) -> DeliveryOutcome:
    now = timezone.now()
    report_id = claimed.pk
    deferred: Exception | None = None
    delivered = result.outcome == AttemptOutcome.DELIVERED
    with transaction.atomic():
        # The incident first, then the report, as everywhere (obligations_sync below locks the incident's
        # other reports). The incident is read fresh with its lock (the columns the obligations depend on).
        # The report's changeable columns are re-read under its lock onto the claimed row, whose incident
        # and destination the audit trail names (nothing here depends on the destination staying put).
        incident = None  # a digest belongs to no incident
        if claimed.incident_id is not None:
            incident = row_locked(Incident, claimed.incident_id, ("id", *INCIDENT_SYNC_FIELDS))
        report = claimed
        current = row_locked(Report, report_id, _RECORD_FIELDS)
        for name in _RECORD_FIELDS:
            setattr(report, name, getattr(current, name))
        number = report.attempt_count + 1
        attempt = DeliveryAttempt(
            report=report, number=number, started_at=started_at, duration_ms=duration_ms, outcome=result.outcome,
            http_status=result.http_status, error_class=result.error_class[:100],
            response_excerpt=result.response_excerpt[:2000], address=destination.address, via_fallback=via_fallback,
        )
        rows_insert([attempt])
        report.attempt_count = number
        if report.status != ReportStatus.PENDING:
            # Delivered by another worker whose lease overlapped ours, or withdrawn meanwhile: keep
            # the attempt as a record, change nothing else.
            row_update(report, ["attempt_count"])
            return DeliveryOutcome(report_id, "skipped")
        # The attempt count is saved with the next state, in one UPDATE.
        release = {"lease_token": None, "lease_expires_at": None, "attempt_count": number}
        if delivered:
            receipt_record(report=report, attempt=attempt, destination=destination, result=result, actor=SYSTEM,
                           delivered_at=now, release=release)
            # A delivery can start the next stage's clock (previous_delivered) or a periodic update. Synced in
            # this transaction, on the incident locked above, so a crash cannot record the delivery without
            # the stage it starts. In a savepoint: should it fail, the delivery is still recorded and the
            # error raised afterwards, as when it ran in a transaction of its own.
            # Decided under the incident's lock: a rule write that commits meanwhile has its newly owed
            # stages opened after its commit (rules_open_owed_stages), which waits for this lock and then
            # sees this delivery. Most deliveries start no clock (docs/reporting-rules.md) and skip the sync.
            try:
                if incident is not None and _delivery_starts_clocks(report):
                    with transaction.atomic():
                        obligations_sync(incident=incident, actor=SYSTEM, kind="delivered")
            except Exception as exc:  # noqa: BLE001  (re-raised below, after the delivery is committed)
                deferred = exc
        elif result.outcome == AttemptOutcome.PERMANENT:
            report_set_status(
                report=report, actor=SYSTEM, to=ReportStatus.FAILED, action="report_failed",
                fields={"failed_at": now, "last_error": f"{result.error_class}: {result.response_excerpt[:500]}",
                        "next_attempt_at": None, **release},
            )
            escalation_raise(report=report, level=EscalationLevel.PERMANENT_FAILURE,
                             message=f"{destination.name} refused the report: {result.error_class}")
        else:
            report.next_attempt_at = next_attempt_at(
                now=now, due_at=report.due_at, attempts=number, retry_after=result.retry_after_seconds
            )
            report.last_error = f"{result.error_class}: {result.response_excerpt[:500]}"
            report.lease_token = report.lease_expires_at = None
            row_update(report, ["next_attempt_at", "last_error", "lease_token", "lease_expires_at",
                                "attempt_count", "updated_at"])
    if deferred is not None:
        raise deferred
    return DeliveryOutcome(report_id, str(result.outcome))


def _delivery_starts_clocks(report: Report) -> bool:
    """Whether delivering ``report`` can open or move a stage (reporting.obligations.delivery_starts_clocks).

    Decided on the active rule set (cached per process, its version read); a report whose rule is not in it
    (deactivated meanwhile) is synced as before, whatever it finds.
    """
    for rule, spec in active_rules():
        if rule.pk == report.rule_id:
            return delivery_starts_clocks(spec, report.stage_key)
    return True
