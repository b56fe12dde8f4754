"""The audit hash chain: sealing (one sealer, bounded batches, only the chain columns) and its hashes."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction

from incidents.audit_chain import CONTENT_COLUMNS, GENESIS, event_hash
from incidents.models import AuditChainHead, AuditEvent
from incidents.models.audit import AppendOnlyError
from incidents.services.audit import audit_record
from incidents.services.audit_chain import ChainWriteError, _write_chain_columns, audit_seal
from incidents.tasks import seal_audit_chain
from tests.conftest import SYSTEM, make_incident

pytestmark = pytest.mark.django_db


def make_events(n: int) -> list[AuditEvent]:
    """n events from real service calls (an incident's creation writes one each)."""
    before = AuditEvent.objects.count()
    for i in range(n):
        make_incident(title=f"Incident {i}")
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == before + n
    return events


def chain() -> list[tuple]:
    return list(AuditEvent.objects.order_by("chain_seq").values_list("id", "chain_seq", "prev_hash", "hash"))


def test_events_are_written_unsealed_and_the_sealer_chains_them_in_id_order():
    events = make_events(3)
    assert all(e.chain_seq is None and e.prev_hash is None and e.hash is None for e in events)

    result = audit_seal()

    assert (result.sealed, result.head_seq, result.busy, result.more) == (3, 3, False, False)
    rows = chain()
    assert [r[0] for r in rows] == [e.id for e in events]
    assert [r[1] for r in rows] == [1, 2, 3]
    assert rows[0][2] == GENESIS
    assert [r[2] for r in rows[1:]] == [r[3] for r in rows[:-1]]
    for (pk, seq, prev, digest) in rows:
        content = AuditEvent.objects.filter(pk=pk).values_list(*CONTENT_COLUMNS).get()
        assert event_hash(content, seq=seq, prev_hash=prev) == digest
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (3, rows[-1][3])
    assert head.sealed_at is not None


def test_later_events_continue_the_chain_and_a_second_run_changes_nothing():
    make_events(2)
    audit_seal()
    sealed_before = chain()
    assert audit_seal().sealed == 0
    assert chain() == sealed_before

    make_events(1)
    assert audit_seal().sealed == 1
    rows = chain()
    assert rows[:2] == sealed_before
    assert (rows[2][1], rows[2][2]) == (3, sealed_before[1][3])
    assert AuditChainHead.objects.get().seq == 3


def test_a_backlog_is_sealed_in_bounded_batches():
    make_events(5)
    first = audit_seal(batch_size=2, max_batches=1)
    assert (first.sealed, first.more) == (2, True)
    assert AuditEvent.objects.filter(chain_seq__isnull=True).count() == 3

    rest = audit_seal(batch_size=2)
    assert (rest.sealed, rest.head_seq, rest.more) == (3, 5, False)
    assert [r[1] for r in chain()] == [1, 2, 3, 4, 5]


def test_a_spent_time_budget_leaves_the_rest_for_the_next_run():
    make_events(3)
    result = audit_seal(batch_size=1, time_budget_seconds=0)
    assert (result.sealed, result.more) == (1, True)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_batch_size_below_one_is_refused(bad):
    make_events(1)
    with pytest.raises(ValueError, match="batch_size"):
        audit_seal(batch_size=bad)
    assert AuditEvent.objects.filter(chain_seq__isnull=False).count() == 0


def test_the_celery_task_seals():
    make_events(2)
    assert seal_audit_chain.apply().get() == 2
    assert AuditChainHead.objects.get().seq == 2


def test_beat_runs_the_sealer_on_the_configured_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["seal-audit-chain"]
    assert entry["task"] == "incidents.seal_audit_chain"
    assert entry["schedule"] == float(settings.MIR_AUDIT_SEAL_INTERVAL_SECONDS)


def test_sealed_events_still_refuse_every_orm_change():
    make_events(1)
    audit_seal()
    event = AuditEvent.objects.get()
    event.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(chain_seq=None)
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()


def test_the_seal_path_never_rewrites_a_sealed_event():
    make_events(1)
    audit_seal()
    event = AuditEvent.objects.get()
    with pytest.raises(ChainWriteError), transaction.atomic():
        _write_chain_columns([(99, GENESIS, "f" * 64, event.pk)])
    assert chain() == [(event.pk, 1, GENESIS, event.hash)]


def test_the_database_refuses_half_sealed_rows():
    from django.db import IntegrityError

    make_events(1)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE incidents_auditevent SET chain_seq = 1")


def test_changes_with_numbers_json_cannot_carry_exactly_still_seal():
    incident = make_incident()
    with transaction.atomic():
        audit_record(actor=SYSTEM, action="imported", obj=incident, changes={"count": 2**60, "ratio": 0.1})
    assert audit_seal().sealed == 2
    event = AuditEvent.objects.get(action="imported")
    content = AuditEvent.objects.filter(pk=event.pk).values_list(*CONTENT_COLUMNS).get()
    assert event_hash(content, seq=event.chain_seq, prev_hash=event.prev_hash) == event.hash


def test_the_hash_covers_every_content_column_seq_and_prev_hash():
    make_events(1)
    audit_seal()
    event = AuditEvent.objects.get()
    content = AuditEvent.objects.filter(pk=event.pk).values_list(*CONTENT_COLUMNS).get()
    base = event_hash(content, seq=1, prev_hash=GENESIS)
    assert base == event.hash
    assert event_hash(content, seq=2, prev_hash=GENESIS) != base
    assert event_hash(content, seq=1, prev_hash="1" * 64) != base
    other = {
        "public_id": uuid.uuid4(), "incident_id": 10**6, "object_type": "incidents.detector", "object_id": "x",
        "action": "status_dismissed", "actor_kind": "user", "actor_user_id": 7, "actor_detector_id": 8,
        "actor_label": "user:mallory", "changes": {"x": 1}, "reason": "hidden",
        "created_at": content[-1] + timedelta(microseconds=1),
    }
    assert set(other) == set(CONTENT_COLUMNS)
    for index, column in enumerate(CONTENT_COLUMNS):
        changed = list(content)
        changed[index] = other[column]
        assert event_hash(tuple(changed), seq=1, prev_hash=GENESIS) != base, column


# --- concurrency (real PostgreSQL) ------------------------------------------------------------------

def _hold_head_lock(locked: threading.Event, release: threading.Event) -> None:
    from django.db import connections

    try:
        with transaction.atomic():
            AuditChainHead.objects.select_for_update().get(pk=1)
            locked.set()
            release.wait(timeout=30)
    finally:
        connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_sealer_at_a_time_and_intake_never_waits_for_it():
    make_events(1)
    audit_seal()
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_head_lock, args=(locked, release))
    holder.start()
    try:
        assert locked.wait(timeout=30)
        # A business transaction writes its event without touching the chain head...
        make_incident(title="filed while a sealer runs")
        # ...and a second sealer steps aside at once instead of queueing behind the first.
        result = audit_seal()
        assert (result.sealed, result.busy) == (0, True)
    finally:
        release.set()
        holder.join(timeout=30)
    assert audit_seal().sealed == 1
    assert [r[1] for r in chain()] == [1, 2]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_build_one_chain():
    from django.db import connections

    make_events(30)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while audit_seal(batch_size=3).busy:
                pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    rows = chain()
    assert [r[1] for r in rows] == list(range(1, 31))
    assert [r[2] for r in rows[1:]] == [r[3] for r in rows[:-1]]
    assert AuditChainHead.objects.get().seq == 30
