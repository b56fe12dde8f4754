"""Sealing the audit trail into one hash chain (docs/architecture.md, "The audit chain").

audit_record inserts events unsealed, so business transactions never queue on a chain lock (that would
throttle intake and add a lock to the incident-then-report order, i.e. deadlocks). audit_seal, run by beat
every MIR_AUDIT_SEAL_INTERVAL_SECONDS, then takes committed unsealed events in id order, in batches of
MIR_AUDIT_SEAL_BATCH, and gives each its chain_seq, prev_hash and hash. One sealer at a time: it holds the
AuditChainHead row lock for the batch, and a second sealer that finds it taken returns at once.

Sealing is not itself audited: a "sealed" event would be a new unsealed event, forever.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from incidents.audit_chain import CONTENT_COLUMNS, GENESIS, event_hash
from incidents.models import AuditChainHead, AuditEvent


class ChainWriteError(RuntimeError):
    """A row to seal was sealed by someone else meanwhile: the batch rolls back rather than fork the chain."""


@dataclass(frozen=True)
class SealResult:
    sealed: int
    head_seq: int
    # Another sealer held the head: this run did nothing, and that one carries on.
    busy: bool = False
    # Unsealed events may remain (time budget spent or batch limit reached); the next run continues.
    more: bool = False


def audit_seal(*, batch_size: int | None = None, max_batches: int | None = None,
               time_budget_seconds: float | None = None) -> SealResult:
    """Seal committed unsealed events, one transaction per batch, until none is left or a limit is reached.

    Each batch commits on its own, so a backlog is worked off in bounded transactions and a crash loses
    at most the batch in hand (its events stay unsealed for the next run).
    """
    batch_size = settings.MIR_AUDIT_SEAL_BATCH if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.monotonic()
    sealed, batches, head_seq = 0, 0, 0
    while True:
        count, head_seq, busy = _seal_batch(batch_size)
        if busy:
            return SealResult(sealed=sealed, head_seq=head_seq, busy=True)
        sealed += count
        batches += 1
        if count < batch_size:
            return SealResult(sealed=sealed, head_seq=head_seq)
        out_of_batches = max_batches is not None and batches >= max_batches
        out_of_time = time_budget_seconds is not None and time.monotonic() - started >= time_budget_seconds
        if out_of_batches or out_of_time:
            return SealResult(sealed=sealed, head_seq=head_seq, more=True)


def _seal_batch(batch_size: int) -> tuple[int, int, bool]:
    with transaction.atomic():
        head = _lock_head()
        if head is None:
            return 0, 0, True
        rows = list(
            AuditEvent.objects.filter(chain_seq__isnull=True).order_by("id").values_list("id", *CONTENT_COLUMNS)[
                :batch_size
            ]
        )
        if not rows:
            return 0, head.seq, False
        seq, prev = head.seq, head.hash
        updates = []
        for row in rows:
            seq += 1
            digest = event_hash(row[1:], seq=seq, prev_hash=prev)
            updates.append((seq, prev, digest, row[0]))
            prev = digest
        _write_chain_columns(updates)
        head.seq, head.hash, head.sealed_at = seq, prev, timezone.now()
        head.save(update_fields=["seq", "hash", "sealed_at"])
        return len(rows), head.seq, False


def _lock_head() -> AuditChainHead | None:
    """The head row, locked until the batch commits; None when another sealer holds it."""
    head = AuditChainHead.objects.select_for_update(skip_locked=True).filter(pk=AuditChainHead.SINGLETON).first()
    if head is not None or AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON).exists():
        return head
    # First seal ever (or a flushed test database): create the genesis head. ON CONFLICT DO NOTHING makes
    # two first sealers safe; the loser then finds the row locked and returns busy.
    AuditChainHead.objects.bulk_create(
        [AuditChainHead(id=AuditChainHead.SINGLETON, seq=0, hash=GENESIS)], ignore_conflicts=True
    )
    return AuditChainHead.objects.select_for_update(skip_locked=True).filter(pk=AuditChainHead.SINGLETON).first()


def _write_chain_columns(updates: list[tuple[int, str, str, int]]) -> None:
    """The one write an audit event gets after its insert (the model's guards refuse every other)."""
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET chain_seq = %s, prev_hash = %s, hash = %s WHERE id = %s AND chain_seq IS NULL",  # noqa: S608
            updates,
        )
        written = cursor.rowcount
    if written != len(updates):
        raise ChainWriteError(f"sealed {written} of {len(updates)} audit events; the batch is rolled back")
