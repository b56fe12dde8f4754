"""Checking the audit chain from genesis, as `manage.py audit_verify` does (docs/operations.md).

A read, not a write: it streams the sealed events in chain order inside one REPEATABLE READ snapshot (so
a sealer committing meanwhile cannot make a sound chain look broken), keeps only the last two hashes, and
stops at the first event that does not hold. Memory stays flat however long the chain is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from incidents.audit_chain import CONTENT_COLUMNS, GENESIS, event_hash
from incidents.models import AuditChainHead, AuditEvent

CONTENT_EDITED = "content edited"
EVENT_MISSING = "event missing"
ORDER_CHANGED = "order changed"
EXTRA_EVENT = "extra event"
HEAD_MISMATCH = "head mismatch"
CHECKPOINT_MISMATCH = "checkpoint mismatch"
STALE_UNSEALED = "stale unsealed events"

_CHUNK = 2000


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str
    seq: int | None = None
    public_id: str | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.public_id:
            where.append(f"event {self.public_id}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.kind}: {self.detail}"


@dataclass
class ChainReport:
    sealed: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    head_sealed_at: datetime | None = None
    unsealed: int = 0
    oldest_unsealed_at: datetime | None = None
    checkpoints_found: list[tuple[int, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_chain_verify(*, checkpoints: list[tuple[int, str]] | None = None,
                       unsealed_max_age: timedelta, now: datetime | None = None) -> ChainReport:
    """Recompute the chain from genesis. ``checkpoints`` are (seq, hash) pairs someone outside the lab holds."""
    now = now or timezone.now()
    wanted: dict[int, set[str]] = {}
    for seq, digest in checkpoints or []:
        wanted.setdefault(seq, set()).add(digest.lower())
    report = ChainReport()
    # Inside a caller's transaction (a test) its snapshot rules; on its own, one snapshot of its own.
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction and connection.vendor == "postgresql":
            # Must be the transaction's first statement; the head, the events and the unsealed count then
            # all come from one snapshot.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = AuditChainHead.objects.filter(pk=AuditChainHead.SINGLETON).first()
        if head is not None:
            report.head_seq, report.head_hash, report.head_sealed_at = head.seq, head.hash, head.sealed_at
        problem = _walk(report, head, wanted)
        if problem is not None:
            report.problems.append(problem)
        unsealed = AuditEvent.objects.filter(chain_seq__isnull=True).aggregate(n=Count("id"), oldest=Min("created_at"))
        report.unsealed, report.oldest_unsealed_at = unsealed["n"], unsealed["oldest"]
        if report.oldest_unsealed_at is not None and now - report.oldest_unsealed_at > unsealed_max_age:
            oldest = (AuditEvent.objects.filter(chain_seq__isnull=True, created_at=report.oldest_unsealed_at)
                      .order_by("id").values_list("public_id", flat=True).first())
            report.problems.append(Problem(
                kind=STALE_UNSEALED, public_id=str(oldest),
                detail=f"{report.unsealed} event(s) unsealed, the oldest for {_age(now - report.oldest_unsealed_at)} "
                       f"(limit {_age(unsealed_max_age)}): is the sealer (beat, incidents.seal_audit_chain) running? "
                       "An old unsealed event can also be a row inserted behind the service's back",
            ))
    return report


def _walk(report: ChainReport, head: AuditChainHead | None, wanted: dict[int, set[str]]) -> Problem | None:
    # Without a head row every sealed event is suspect; _check_end says so once rather than at seq 1.
    head_seq = head.seq if head is not None else None
    expected, last_hash, before_last_hash, last_public_id = 1, GENESIS, None, None
    rows = (AuditEvent.objects.filter(chain_seq__isnull=False).order_by("chain_seq")
            .values_list("chain_seq", "prev_hash", "hash", *CONTENT_COLUMNS).iterator(chunk_size=_CHUNK))
    for seq, prev_hash, stored, *content in rows:
        public_id = str(content[0])
        if seq != expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            return Problem(kind=EVENT_MISSING, seq=expected,
                           detail=f"no event at {missing}; the chain resumes at seq {seq} (event {public_id})")
        if head_seq is not None and seq > head_seq:
            return Problem(kind=EXTRA_EVENT, seq=seq, public_id=public_id,
                           detail=f"sealed beyond the chain head the sealer recorded (seq {head_seq})")
        content_ok = event_hash(tuple(content), seq=seq, prev_hash=prev_hash) == stored
        if prev_hash != last_hash:
            return _broken_link(seq, public_id, prev_hash, content_ok, last_public_id, before_last_hash)
        if not content_ok:
            return Problem(kind=CONTENT_EDITED, seq=seq, public_id=public_id,
                           detail="its content no longer matches the hash it was sealed with")
        if seq in wanted:
            if stored not in wanted[seq]:
                return Problem(kind=CHECKPOINT_MISMATCH, seq=seq, public_id=public_id,
                               detail=f"the chain holds {stored} here, not the checkpoint's "
                                      f"{', '.join(sorted(wanted[seq]))}: the chain was rewritten up to here")
            report.checkpoints_found.append((seq, stored))
        report.sealed += 1
        before_last_hash, last_hash, last_public_id = last_hash, stored, public_id
        expected += 1
    return _check_end(report, head, wanted, expected - 1, last_hash, last_public_id)


def _broken_link(seq: int, public_id: str, prev_hash: str, content_ok: bool, last_public_id: str | None,
                 before_last_hash: str | None) -> Problem:
    """Event ``seq`` does not link to the one before it: say which tampering explains that."""
    if before_last_hash is not None and prev_hash == before_last_hash:
        return Problem(kind=EXTRA_EVENT, seq=seq - 1, public_id=last_public_id,
                       detail=f"the next event (seq {seq}, {public_id}) was sealed right after seq {seq - 2}: "
                              f"this one was inserted between them")
    sealed_after = (AuditEvent.objects.filter(hash=prev_hash, chain_seq__isnull=False)
                    .values_list("chain_seq", "public_id").first())
    if sealed_after is not None and sealed_after[0] != seq - 1:
        return Problem(kind=ORDER_CHANGED, seq=seq, public_id=public_id,
                       detail=f"it was sealed right after event {sealed_after[1]}, which now stands at seq "
                              f"{sealed_after[0]}, not at seq {seq - 1}")
    if content_ok and seq > 1:
        return Problem(kind=CONTENT_EDITED, seq=seq - 1, public_id=last_public_id,
                       detail=f"its hash was recomputed after sealing: the next event (seq {seq}, {public_id}) "
                              "still links to the hash it was sealed with")
    return Problem(kind=CONTENT_EDITED, seq=seq, public_id=public_id,
                   detail="its link to the previous event was changed")


def _check_end(report: ChainReport, head: AuditChainHead | None, wanted: dict[int, set[str]], last_seq: int,
               last_hash: str, last_public_id: str | None) -> Problem | None:
    head_seq = head.seq if head is not None else 0
    if head is None and last_seq:
        return Problem(kind=HEAD_MISMATCH, detail="events are sealed but the chain head row is gone")
    if last_seq < head_seq:
        missing = f"seq {head_seq}" if head_seq == last_seq + 1 else f"seq {last_seq + 1} to {head_seq}"
        return Problem(kind=EVENT_MISSING, seq=last_seq + 1,
                       detail=f"no event at {missing}: the chain ends before the head the sealer recorded")
    if head is not None and head.hash != last_hash:
        return Problem(kind=HEAD_MISMATCH, seq=last_seq, public_id=last_public_id,
                       detail=f"the chain ends at hash {last_hash}, the head records {head.hash}")
    beyond = sorted(seq for seq in wanted if seq > last_seq)
    if beyond:
        return Problem(kind=EVENT_MISSING, seq=beyond[0],
                       detail=f"a checkpoint is held for seq {beyond[0]}, but the chain ends at seq {last_seq}")
    return None


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
