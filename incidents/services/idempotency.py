"""Idempotency-Key handling for detector requests (IETF draft-ietf-httpapi-idempotency-key-header).

Protocol, per (detector, key), all of it inside the one transaction that does the request's work:

1. ``idempotency_claim`` comes first. On PostgreSQL it takes the key's advisory transaction lock
   (``pg_try_advisory_xact_lock``, never waiting): if another request holds it, that request is still
   in flight and the answer is 409. In the same statement it reads the key's stored row: a completed
   row with the same request fingerprint is replayed, another fingerprint is a mismatch (422), an
   expired row is a new key.
2. The work runs, and ``idempotency_complete`` ends it by writing the completed row with the response
   (an INSERT, or taking over the expired row): the key is completed exactly when its work commits,
   and one commit does both.
3. Any error rolls the whole transaction back, the lock with it: nothing was stored, the client may
   fix the request and retry. A request that crashes leaves nothing behind (no claim to wait out).

The lookup reads the snapshot of its statement, which can be taken just before a request holding the
lock commits and lets it go. That request's row then makes ``idempotency_complete`` fail (the unique
constraint, or the expired row changed under us): ``LostClaimError``, the work rolls back, and the
caller runs the claim again in a new transaction, which replays the stored answer
(``idempotency_retrying``). A key's work therefore commits at most once.

On SQLite there are no advisory locks; its writers are serialised by the database lock, so a
concurrent duplicate ends in ``LostClaimError`` as above and is answered with the replay, never a
second incident. The 409 for a key in flight is PostgreSQL's.

A batch, whose items commit one by one, holds the same lock for its connection's session instead
(``idempotency_held``), so a batch and a single request with one key exclude each other too.

Rows written before this protocol (a claim committed ahead of the work, ``state = in_flight``) are
still understood: in flight until their lease runs out, then free to take over.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from incidents.models import Detector, IdempotencyKey
from incidents.models.fast_insert import rows_insert
from incidents.models.fast_rows import RowReader, db_value, quote, row_update

T = TypeVar("T")


class ClaimResult(Enum):
    CLAIMED = "claimed"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    detector: Detector
    key: str
    fingerprint: str
    # The key's stored row: the answer to replay (REPLAY), the other request's (MISMATCH, IN_FLIGHT
    # from a claim of the old protocol), the expired row to take over (CLAIMED); None when there is none.
    record: IdempotencyKey | None = None


class LostClaimError(RuntimeError):
    """Another request stored this key after our lookup; our work must not commit. Claim again."""


def _lock_id(detector_id: int, key: str) -> int:
    """The key's advisory lock: 64 bits of a hash, in a namespace of its own (grouping locks differ)."""
    digest = hashlib.blake2b(f"idempotency:{detector_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@functools.cache
def _reader() -> RowReader:
    return RowReader(IdempotencyKey, "k")


@functools.cache
def _claim_sql(vendor: str, hold: str) -> str:
    """Lock and look up in one statement (one round trip on every request)."""
    meta = IdempotencyKey._meta
    if vendor == "postgresql":
        lock = "pg_try_advisory_xact_lock(%s)" if hold == "transaction" else "pg_try_advisory_lock(%s)"
    else:
        lock = "%s IS NOT NULL"  # no advisory locks: always "taken" (module docstring)
    detector, key = (f"{quote('k')}.{quote(meta.get_field(name).column)}" for name in ("detector", "key"))
    return (
        f"SELECT {lock}, {_reader().columns} FROM (SELECT 1 AS one) AS {quote('o')} "  # noqa: S608
        f"LEFT JOIN {quote(meta.db_table)} AS {quote('k')} ON {detector} = %s AND {key} = %s"
    )


def _claim(*, detector: Detector, key: str, fingerprint: str, hold: str) -> Claim:
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor, hold), [_lock_id(detector.pk, key), detector.pk, key])
        row = cursor.fetchone()
    locked, record = row[0], _reader().instance(row, 1)

    def claim(result: ClaimResult) -> Claim:
        return Claim(result, detector, key, fingerprint, record)

    if not locked:
        return claim(ClaimResult.IN_FLIGHT)
    now = timezone.now()
    if record is None or record.expires_at <= now:
        return claim(ClaimResult.CLAIMED)  # an expired key is a new key; the purge had not got to it yet
    if record.request_fingerprint != fingerprint:
        return claim(ClaimResult.MISMATCH)
    if record.state == IdempotencyKey.State.COMPLETED:
        return claim(ClaimResult.REPLAY)
    if record.lease_expires_at is not None and record.lease_expires_at > now:
        return claim(ClaimResult.IN_FLIGHT)  # a claim of the old protocol, its request maybe still running
    return claim(ClaimResult.CLAIMED)  # ... or one whose request died: taken over


def idempotency_claim(*, detector: Detector, key: str, fingerprint: str) -> Claim:
    """Claim the key for the caller's transaction, or say why not (module docstring)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_claim must run in the transaction that will do the work")
    return _claim(detector=detector, key=key, fingerprint=fingerprint, hold="transaction")


@contextmanager
def idempotency_held(*, detector: Detector, key: str, fingerprint: str) -> Iterator[Claim]:
    """Claim the key across several transactions (a batch): the lock is the session's until the block ends.

    For work that commits piece by piece outside one transaction; the caller completes the key with
    ``idempotency_complete`` in a transaction of its own inside the block. The lock goes with the
    connection if the process dies.
    """
    claim = _claim(detector=detector, key=key, fingerprint=fingerprint, hold="session")
    try:
        yield claim
    finally:
        if claim.result is not ClaimResult.IN_FLIGHT and connection.vendor == "postgresql":
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [_lock_id(detector.pk, key)])
            except DatabaseError:
                pass  # the connection is gone, and the session's locks with it


def _window() -> dict:
    return {"expires_at": timezone.now() + timedelta(seconds=settings.MIR_IDEMPOTENCY_TTL_SECONDS)}


def idempotency_complete(*, claim: Claim, status: int, body: dict) -> IdempotencyKey:
    """Store the response; call last, inside the transaction that did the work. Raises LostClaimError
    (the caller's transaction must then roll back) if another request stored the key meanwhile."""
    if claim.result is not ClaimResult.CLAIMED:
        raise ValueError(f"the key was not claimed ({claim.result.value})")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_complete must run in the transaction that did the work")
    values = {
        "state": IdempotencyKey.State.COMPLETED, "request_fingerprint": claim.fingerprint,
        "response_status": status, "response_body": body, "lease_expires_at": None, **_window(),
    }
    old = claim.record
    if old is None:
        record = IdempotencyKey(detector=claim.detector, key=claim.key, **values)
        try:
            rows_insert([record])
        except IntegrityError as exc:
            raise LostClaimError(f"idempotency key {claim.key!r} was stored by another request") from exc
        return record
    # Take the expired (or abandoned) row over only if it is still as we read it.
    record = IdempotencyKey(pk=old.pk, detector=claim.detector, key=claim.key, created_at=timezone.now(), **values)
    taken = row_update(record, [*values, "created_at"], where=f"{quote('expires_at')} = %s AND {quote('state')} = %s",
                       params=[db_value(IdempotencyKey, "expires_at", old.expires_at), old.state])
    if taken != 1:
        raise LostClaimError(f"idempotency key {claim.key!r} was taken over by another request")
    return record


def idempotency_retrying(work: Callable[[], T]) -> T:
    """Run ``work``, which claims a key and completes it; if another request stored the key after our
    lookup (``LostClaimError``, module docstring), run it once more: its claim now finds that answer."""
    try:
        return work()
    except LostClaimError:
        return work()


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
        lease_expires_at=None,
        **_window(),
    )


def idempotency_keys_purge() -> int:
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
