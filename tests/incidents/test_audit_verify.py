"""audit_verify: a clean chain passes; edits, deletions, reordering and insertions made behind the ORM's
back (raw SQL) are each caught, and the first bad event is named."""
from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from incidents import audit_verification
from incidents.audit_chain import CONTENT_COLUMNS, event_hash
from incidents.models import AuditChainHead, AuditEvent
from incidents.services.audit_chain import audit_seal
from tests.conftest import make_incident

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def sealed_chain(n: int = 6) -> list[AuditEvent]:
    for i in range(n):
        make_incident(title=f"Incident {i}")
    audit_seal()
    return list(AuditEvent.objects.order_by("chain_seq"))


def sql(statement: str, params: list | None = None) -> None:
    """Tampering as someone with database access would: straight SQL, no model guards."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def verify(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), f"{err.getvalue()}{exc}"
    return 0, out.getvalue(), err.getvalue()


def forged_hash(pk: int, seq: int, prev_hash: str) -> str:
    """What a forger with the published algorithm (and no secret: there is none) computes for a row."""
    content = AuditEvent.objects.filter(pk=pk).values_list(*CONTENT_COLUMNS).get()
    return event_hash(content, seq=seq, prev_hash=prev_hash)


def test_a_clean_chain_passes():
    events = sealed_chain()
    code, out, err = verify()
    assert code == 0, err
    assert f"{len(events)} sealed event(s) verified" in out
    assert f"head {len(events)}:{events[-1].hash}" in out
    assert "unsealed: none" in out
    assert "OK" in out


def test_an_empty_trail_passes():
    code, out, _ = verify()
    assert code == 0
    assert "nothing sealed yet" in out


def test_an_edited_event_is_named():
    events = sealed_chain()
    sql(f"UPDATE {TABLE} SET reason = 'nothing to see' WHERE chain_seq = 3")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"seq 3, event {events[2].public_id}: content edited" in err


@pytest.mark.parametrize(
    ("column", "value"),
    [("changes", '{"status": ["new", "dismissed"]}'), ("actor_label", "user:someone-else"), ("action", "viewed"),
     ("created_at", "2020-01-01T00:00:00Z"), ("object_id", "42")],
)
def test_an_edit_of_any_content_column_is_caught(column, value):
    events = sealed_chain(4)
    sql(f"UPDATE {TABLE} SET {column} = %s WHERE chain_seq = 2", [value])  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"seq 2, event {events[1].public_id}: content edited" in err


def test_an_edited_event_whose_hash_was_recomputed_is_still_named():
    events = sealed_chain()
    sql(f"UPDATE {TABLE} SET reason = 'rewritten' WHERE chain_seq = 3")  # noqa: S608
    sql(f"UPDATE {TABLE} SET hash = %s WHERE chain_seq = 3",  # noqa: S608
        [forged_hash(events[2].pk, 3, events[2].prev_hash)])
    code, _, err = verify()
    assert code == 1
    assert f"seq 3, event {events[2].public_id}: content edited" in err
    assert "hash was recomputed" in err


def test_a_deleted_event_is_named_by_its_place():
    events = sealed_chain()
    sql(f"DELETE FROM {TABLE} WHERE chain_seq = 4")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert "seq 4: event missing" in err
    assert f"resumes at seq 5 (event {events[4].public_id})" in err


def test_deleted_events_at_the_end_are_caught_by_the_head():
    sealed_chain()
    sql(f"DELETE FROM {TABLE} WHERE chain_seq >= 5")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert "seq 5: event missing" in err
    assert "seq 5 to 6" in err


def test_swapped_events_are_named_as_reordered():
    events = sealed_chain()
    # Swap the places of seq 3 and 4 (through a free value: chain_seq is unique).
    sql(f"UPDATE {TABLE} SET chain_seq = 1000 WHERE chain_seq = 3")  # noqa: S608
    sql(f"UPDATE {TABLE} SET chain_seq = 3 WHERE chain_seq = 4")  # noqa: S608
    sql(f"UPDATE {TABLE} SET chain_seq = 4 WHERE chain_seq = 1000")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"seq 3, event {events[3].public_id}: order changed" in err
    assert str(events[2].public_id) in err


def test_an_event_inserted_into_the_chain_is_named_as_extra():
    events = sealed_chain()
    # Make room at seq 4 (renumbering through a far range keeps chain_seq unique), then insert a forged event
    # with a correct hash that links to seq 3: the forger follows the published algorithm.
    sql(f"UPDATE {TABLE} SET chain_seq = chain_seq + 1000 WHERE chain_seq >= 4")  # noqa: S608
    sql(f"UPDATE {TABLE} SET chain_seq = chain_seq - 999 WHERE chain_seq > 1000")  # noqa: S608
    forged = uuid.uuid4()
    sql(
        f"INSERT INTO {TABLE} (public_id, object_type, object_id, action, actor_kind, actor_label, changes, "  # noqa: S608
        "reason, created_at) VALUES (%s, 'incidents.incident', 'x', 'reportability_decided', 'system', "
        "'system:tests', '{}', 'not reportable', %s)",
        [forged, events[2].created_at],
    )
    pk = AuditEvent.objects.get(public_id=forged).pk
    sql(f"UPDATE {TABLE} SET chain_seq = 4, prev_hash = %s, hash = %s WHERE id = %s",  # noqa: S608
        [events[2].hash, forged_hash(pk, 4, events[2].hash), pk])
    code, _, err = verify()
    assert code == 1
    assert f"seq 4, event {forged}: extra event" in err


def test_an_event_appended_beyond_the_head_is_named_as_extra():
    events = sealed_chain()
    make_incident(title="appended by hand")
    pk = AuditEvent.objects.get(chain_seq__isnull=True).pk
    sql(f"UPDATE {TABLE} SET chain_seq = 7, prev_hash = %s, hash = %s WHERE id = %s",  # noqa: S608
        [events[-1].hash, forged_hash(pk, 7, events[-1].hash), pk])
    code, _, err = verify()
    assert code == 1
    assert f"seq 7, event {AuditEvent.objects.get(pk=pk).public_id}: extra event" in err


def test_an_edited_link_is_caught():
    events = sealed_chain()
    sql(f"UPDATE {TABLE} SET prev_hash = %s WHERE chain_seq = 2", ["e" * 64])  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"seq 2, event {events[1].public_id}: content edited" in err


def test_an_edited_head_is_caught():
    sealed_chain()
    AuditChainHead.objects.update(hash="a" * 64)
    code, _, err = verify()
    assert code == 1
    assert "head mismatch" in err


def test_a_deleted_head_is_caught():
    sealed_chain()
    AuditChainHead.objects.all().delete()
    code, _, err = verify()
    assert code == 1
    assert "head mismatch" in err


def test_the_first_bad_event_is_the_one_named():
    events = sealed_chain()
    sql(f"UPDATE {TABLE} SET reason = 'late edit' WHERE chain_seq = 5")  # noqa: S608
    sql(f"UPDATE {TABLE} SET reason = 'early edit' WHERE chain_seq = 2")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"verification failed: seq 2, event {events[1].public_id}" in err


def test_verification_streams_across_chunks(monkeypatch):
    monkeypatch.setattr(audit_verification, "_CHUNK", 2)
    events = sealed_chain(7)
    assert verify()[0] == 0
    sql(f"UPDATE {TABLE} SET reason = 'x' WHERE chain_seq = 6")  # noqa: S608
    code, _, err = verify()
    assert code == 1
    assert f"seq 6, event {events[5].public_id}: content edited" in err


# --- checkpoints held outside the lab -----------------------------------------------------------------

def test_a_checkpoint_in_the_chain_passes():
    events = sealed_chain()
    code, out, err = verify("--checkpoint", f"3:{events[2].hash}", "--checkpoint", f"6:{events[5].hash.upper()}")
    assert code == 0, err
    assert f"checkpoint 3:{events[2].hash} found" in out
    assert f"checkpoint 6:{events[5].hash} found" in out


def test_a_consistently_rewritten_chain_is_caught_only_by_a_checkpoint():
    """Someone who edits an event and recomputes every later hash and the head leaves a self-consistent
    chain; the checkpoint an authority received in a report is what exposes it."""
    events = sealed_chain()
    checkpoint = f"5:{events[4].hash}"
    sql(f"UPDATE {TABLE} SET reason = 'rewritten history' WHERE chain_seq = 2")  # noqa: S608
    prev = events[0].hash
    for event in events[1:]:
        digest = forged_hash(event.pk, event.chain_seq, prev)
        sql(f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE id = %s", [prev, digest, event.pk])  # noqa: S608
        prev = digest
    AuditChainHead.objects.update(hash=prev)
    assert verify()[0] == 0
    code, _, err = verify("--checkpoint", checkpoint)
    assert code == 1
    assert f"seq 5, event {events[4].public_id}: checkpoint mismatch" in err


def test_a_checkpoint_beyond_the_end_of_the_chain_fails():
    events = sealed_chain(3)
    code, _, err = verify("--checkpoint", f"9:{events[0].hash}")
    assert code == 1
    assert "seq 9: event missing" in err


@pytest.mark.parametrize(
    "bad", ["", "abc", "5", f"5:{'a' * 63}", f"5:{'g' * 64}", f"0:{'a' * 64}", f"-1:{'a' * 64}", f"x:{'a' * 64}",
            f"5:{'a' * 64}:extra", f"99999999999999999999:{'a' * 64}"],
)
def test_a_malformed_checkpoint_is_a_usage_error(bad):
    sealed_chain(1)
    code, _, err = verify(f"--checkpoint={bad}")
    assert code == 2
    assert "expected SEQ:HASH" in err


def test_a_max_unsealed_age_below_one_is_a_usage_error():
    code, _, err = verify("--max-unsealed-age", "0")
    assert code == 2
    assert "at least 1" in err


# --- unsealed events ----------------------------------------------------------------------------------

def test_fresh_unsealed_events_are_reported_but_pass():
    sealed_chain(2)
    make_incident(title="not sealed yet")
    code, out, _ = verify()
    assert code == 0
    assert "unsealed: 1 event(s)" in out


def test_unsealed_events_older_than_the_limit_fail():
    sealed_chain(2)
    make_incident(title="the sealer stopped")
    stale = AuditEvent.objects.get(chain_seq__isnull=True)
    sql(f"UPDATE {TABLE} SET created_at = %s WHERE id = %s",  # noqa: S608
        [timezone.now() - timedelta(minutes=10), stale.pk])
    code, _, err = verify("--max-unsealed-age", "300")
    assert code == 1
    assert f"event {stale.public_id}: stale unsealed events" in err
    assert verify("--max-unsealed-age", "3600")[0] == 0


def test_the_hashes_are_plain_sha256_anyone_can_recompute():
    events = sealed_chain(1)
    import rfc8785

    content = dict(zip(CONTENT_COLUMNS, AuditEvent.objects.filter(pk=events[0].pk).values_list(*CONTENT_COLUMNS).get(),
                       strict=True))
    record = {
        "v": 1, "seq": 1, "prev_hash": "0" * 64,
        "event": {
            "public_id": str(content["public_id"]), "incident_id": content["incident_id"],
            "object_type": content["object_type"], "object_id": content["object_id"], "action": content["action"],
            "actor": {"kind": content["actor_kind"], "user_id": content["actor_user_id"],
                      "detector_id": content["actor_detector_id"], "label": content["actor_label"]},
            "changes": content["changes"], "reason": content["reason"],
            "created_at": content["created_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }
    assert hashlib.sha256(rfc8785.dumps(record)).hexdigest() == events[0].hash
