"""Idempotency-Key handling for detector requests (IETF draft-ietf-httpapi-idempotency-key-header).

Protocol, per (detector, key):
1. ``idempotency_claim`` commits an in-flight claim on its own, before any work, so a concurrent
   request with the same key sees it (409) instead of doing the work twice.
2. The work runs in one transaction that ends with ``idempotency_complete``, which stores the
   response only if the claim is still ours; if our lease ran out and another request took the key
   over, it raises and the work rolls back, so the key's incident exists at most once.
3. On a 4xx or an exception the claim is released: nothing was stored, the client may fix and retry.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from incidents.models import Detector, IdempotencyKey
from incidents.models.fast_insert import rows_insert


class ClaimResult(Enum):
    CLAIMED = "claimed"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    record: IdempotencyKey


class LostClaimError(RuntimeError):
    """Our lease on the key expired and another request took it over; our work must not commit."""


def _new_window() -> dict:
    now = timezone.now()
    return {
        "lease_expires_at": now + timedelta(seconds=settings.MIR_IDEMPOTENCY_LEASE_SECONDS),
        "expires_at": now + timedelta(seconds=settings.MIR_IDEMPOTENCY_TTL_SECONDS),
    }


def _take_over(record: IdempotencyKey, fingerprint: str, **match: object) -> IdempotencyKey | None:
    """Conditional UPDATE: take the row over only if it is still in the state we saw."""
    window = _new_window()
    updated = IdempotencyKey.objects.filter(pk=record.pk, **match).update(
        state=IdempotencyKey.State.IN_FLIGHT,
        request_fingerprint=fingerprint,
        response_status=None,
        response_body=None,
        **window,
    )
    if updated != 1:
        return None
    record.refresh_from_db()
    return record


def _insert_claim(**values: object) -> IdempotencyKey:
    """INSERT the in-flight claim: committed (or, on a unique violation, absent) when this returns.

    Outside a transaction one INSERT in autocommit mode is its own transaction; wrapping it in
    ``atomic()`` would only add a BEGIN and a COMMIT round trip to every request. Inside a caller's
    transaction a savepoint keeps a unique violation from breaking that transaction.
    """
    record = IdempotencyKey(**values)
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            rows_insert([record])
    else:
        rows_insert([record])
    return record


def idempotency_claim(*, detector: Detector, key: str, fingerprint: str) -> Claim:
    for _ in range(3):
        try:
            record = _insert_claim(detector=detector, key=key, request_fingerprint=fingerprint, **_new_window())
            return Claim(ClaimResult.CLAIMED, record)
        except IntegrityError:
            record = IdempotencyKey.objects.filter(detector=detector, key=key).first()
            if record is None:
                continue  # purged between our INSERT and SELECT: try again
        now = timezone.now()
        if record.expires_at <= now:
            # An expired key is a new key; the purge task had not got to it yet.
            taken = _take_over(record, fingerprint, expires_at=record.expires_at)
            if taken is not None:
                return Claim(ClaimResult.CLAIMED, taken)
            continue
        if record.request_fingerprint != fingerprint:
            return Claim(ClaimResult.MISMATCH, record)
        if record.state == IdempotencyKey.State.COMPLETED:
            return Claim(ClaimResult.REPLAY, record)
        if record.lease_expires_at <= now:
            # The request holding it died (nothing of it committed); take the key over.
            taken = _take_over(
                record, fingerprint, state=IdempotencyKey.State.IN_FLIGHT, lease_expires_at=record.lease_expires_at
            )
            if taken is not None:
                return Claim(ClaimResult.CLAIMED, taken)
            continue
        return Claim(ClaimResult.IN_FLIGHT, record)
    return Claim(ClaimResult.IN_FLIGHT, record)


@functools.cache
def _complete_sql() -> str:
    """The conditional UPDATE that completes a claim, written once: it runs on every request, and the
    ORM's ``filter().update()`` spent more CPU building it than PostgreSQL spent running it."""
    meta, quote = IdempotencyKey._meta, connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in
              ("state", "response_status", "response_body", "lease_expires_at")}
    return (
        f"UPDATE {quote(meta.db_table)} SET {column['state']} = %s, {column['response_status']} = %s, "  # noqa: S608
        f"{column['response_body']} = %s WHERE {quote(meta.pk.column)} = %s AND {column['state']} = %s "
        f"AND {column['lease_expires_at']} = %s"
    )


def idempotency_complete(*, record: IdempotencyKey, status: int, body: dict) -> None:
    """Store the response; call inside the transaction that did the work."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_complete must run in the transaction that did the work")
    meta = IdempotencyKey._meta
    # Values go through their fields, as the ORM would: SQLite stores datetimes as text in Django's
    # own format, so a raw datetime parameter would never match the stored lease.
    lease = meta.get_field("lease_expires_at").get_db_prep_value(record.lease_expires_at, connection)
    with connection.cursor() as cursor:
        cursor.execute(_complete_sql(), [
            IdempotencyKey.State.COMPLETED.value, status,
            meta.get_field("response_body").get_db_prep_save(body, connection),
            record.pk, IdempotencyKey.State.IN_FLIGHT.value, lease,
        ])
        updated = cursor.rowcount
    if updated != 1:
        raise LostClaimError(f"idempotency key {record.key!r} was taken over by another request")
    record.state = IdempotencyKey.State.COMPLETED
    record.response_status = status
    record.response_body = body


def idempotency_release(*, record: IdempotencyKey) -> None:
    IdempotencyKey.objects.filter(
        pk=record.pk, state=IdempotencyKey.State.IN_FLIGHT, lease_expires_at=record.lease_expires_at
    ).delete()


def idempotency_item_lookup(*, detector: Detector, key: str) -> IdempotencyKey | None:
    return IdempotencyKey.objects.filter(
        detector=detector, key=key, state=IdempotencyKey.State.COMPLETED, expires_at__gt=timezone.now()
    ).first()


def idempotency_item_record(*, detector: Detector, key: str, fingerprint: str, status: int, body: dict) -> None:
    """Record one batch item's response, in the item's transaction (the batch key guards exclusivity)."""
    IdempotencyKey.objects.filter(detector=detector, key=key).delete()
    IdempotencyKey.objects.create(
        detector=detector,
        key=key,
        request_fingerprint=fingerprint,
        state=IdempotencyKey.State.COMPLETED,
        response_status=status,
        response_body=body,
        **_new_window(),
    )


def idempotency_keys_purge() -> int:
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
