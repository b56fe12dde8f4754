"""Delivering reports to a real receiver (the sandbox, on loopback): claim, freeze, send, record."""
from __future__ import annotations

import base64
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from incidents.actors import Actor
from reporting.choices import AttemptOutcome, EscalationLevel, ReportStatus
from reporting.models import DeliveryAttempt, Escalation, Report
from reporting.sandbox_receiver.app import SandboxApp
from reporting.sandbox_receiver.ledger import Control, Ledger
from reporting.sandbox_receiver.server import running
from reporting.services.delivery import report_claim, report_deliver
from reporting.services.reports import report_send_now, report_withdraw
from reporting.services.sweep import reports_sweep
from reporting.signing import published_keys, signing_key_current
from tests.conftest import make_incident
from tests.reporting.conftest import make_destination, new_webhook_secret


def _keys() -> dict[str, bytes]:
    signing_key_current()
    out = {}
    for key in published_keys():
        raw = key["public_key"]
        out[key["key_id"]] = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return out


@pytest.fixture
def receiver(db, tmp_path):
    secret = new_webhook_secret()
    ledger = Ledger(tmp_path / "sandbox")
    app = SandboxApp(secret=secret, ledger=ledger, keys=_keys())
    with running(app) as server:
        host, port = server.server_address[:2]
        destination = make_destination("authority-a", address=f"http://{host}:{port}/webhook", secret=secret)
        yield destination, ledger


def _set_mode(ledger: Ledger, **kwargs) -> None:
    ledger.set_control(Control(**{"mode": "ok", **kwargs}))


def _early_notice(incident) -> Report:
    return Report.objects.get(incident=incident, stage_name="early_notice")


def test_a_due_report_is_delivered_verified_and_recorded(receiver):
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    assert report.status == ReportStatus.DELIVERED and report.delivered_at and not report.late
    assert report.receipt["webhook_id"] == str(report.public_id)
    assert report.receipt["payload_sha256"] == report.payload_sha256
    [attempt] = DeliveryAttempt.objects.filter(report=report)
    assert attempt.outcome == AttemptOutcome.DELIVERED and attempt.http_status == 200
    [entry] = ledger.entries()
    assert entry["webhook_id"] == str(report.public_id) and entry["verified"]
    assert ledger.body(str(report.public_id)) == report.payload.encode()


def test_a_transient_failure_retries_the_same_bytes_before_the_deadline(receiver):
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    _set_mode(ledger, mode="fail")
    assert report_deliver(report_id=report.pk).outcome == "transient"
    report.refresh_from_db()
    first_payload = report.payload
    assert report.status == ReportStatus.PENDING and report.lease_token is None
    assert timezone.now() < report.next_attempt_at <= report.due_at
    assert report.attempts.get().http_status == 503
    _set_mode(ledger)
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    assert report.payload == first_payload and report.attempt_count == 2
    assert ledger.body(str(report.public_id)) == first_payload.encode()


def test_a_permanent_failure_fails_and_escalates_at_once(receiver, django_capture_on_commit_callbacks, staff_user):
    destination, ledger = receiver
    report = _early_notice(make_incident(severity="SEV-1"))
    _set_mode(ledger, mode="reject")
    with django_capture_on_commit_callbacks(execute=True):
        assert report_deliver(report_id=report.pk).outcome == "permanent"
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED and report.next_attempt_at is None and "HTTP 400" in report.last_error
    escalation = Escalation.objects.get(report=report)
    assert escalation.level == EscalationLevel.PERMANENT_FAILURE and escalation.notified_at is not None
    assert mail.outbox and staff_user.email in mail.outbox[0].to
    # A person sends it again once the receiver is fixed; it is still the same document.
    _set_mode(ledger)
    report_send_now(report=report, actor=Actor.for_user(staff_user), late_reason="receiver misconfigured")
    assert report_deliver(report_id=report.pk).outcome == "delivered"


def test_a_late_delivery_is_marked_late(receiver):
    report = _early_notice(make_incident(severity="SEV-1"))
    Report.objects.filter(pk=report.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    report_deliver(report_id=report.pk)
    report.refresh_from_db()
    assert report.status == ReportStatus.DELIVERED and report.late is True


def test_withdrawn_and_approval_gated_reports_are_not_sent(receiver, staff_actor):
    destination, ledger = receiver
    incident = make_incident(severity="SEV-1")
    early = _early_notice(incident)
    report_withdraw(report=early, actor=staff_actor, reason="duplicate of INC-000001")
    full = Report.objects.get(incident=incident, stage_name="full_report")
    assert report_deliver(report_id=early.pk).outcome == "skipped"
    assert report_deliver(report_id=full.pk).outcome == "skipped"
    assert ledger.entries() == []


def test_only_one_claim_wins_and_an_expired_lease_is_free_again(default_destination):
    report = _early_notice(make_incident(severity="SEV-1"))
    first = report_claim(report_id=report.pk)
    assert first is not None and report_claim(report_id=report.pk) is None
    later = timezone.now() + timedelta(hours=1)
    assert report_claim(report_id=report.pk, now=later) is not None  # the first worker died


def test_the_sweeper_hands_each_due_report_to_one_task(default_destination, monkeypatch):
    handed = []
    monkeypatch.setattr("reporting.services.sweep.enqueue", lambda rid, token: handed.append((rid, token)) or True)
    incidents = [make_incident(severity="SEV-1", title=f"i{i}") for i in range(3)]
    result = reports_sweep()
    assert sorted(result.due) == sorted(_early_notice(i).pk for i in incidents)
    assert reports_sweep().due == []  # leased to the tasks just enqueued
    report_id, token = handed[0]
    assert report_claim(report_id=report_id) is None  # the fast path may not take a handed-out report
    assert report_claim(report_id=report_id, lease_token=token) is not None  # the task holding the token may
    assert reports_sweep(dry_run=True).due == []


def test_the_sweeper_takes_earliest_deadline_first(default_destination, monkeypatch):
    monkeypatch.setattr("reporting.services.sweep.enqueue", lambda rid, token: True)
    reports = [_early_notice(make_incident(severity="SEV-1", title=f"i{i}")) for i in range(3)]
    for offset, report in zip([30, 10, 20], reports, strict=True):
        Report.objects.filter(pk=report.pk).update(due_at=timezone.now() + timedelta(minutes=offset))
    assert reports_sweep(limit=2).due == [reports[1].pk, reports[2].pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_sweepers_never_hand_out_a_report_twice(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    make_destination()
    handed: list[int] = []
    lock = threading.Lock()

    def record(report_id, token):
        with lock:
            handed.append(report_id)
        return True

    monkeypatch.setattr("reporting.services.sweep.enqueue", record)
    for i in range(40):
        make_incident(severity="SEV-1", title=f"i{i}")
    barrier = threading.Barrier(4)

    def sweep():
        try:
            barrier.wait(timeout=10)
            reports_sweep(limit=15)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(handed) == len(set(handed)) == 40


def test_delivery_starts_the_clock_of_the_stage_after_it(receiver):
    from reporting.services.rules import rules_load

    destination, ledger = receiver
    rules_load(data={"version": 1, "rules": [{"name": "two-step", "min_severity": "SEV-4", "categories": ["FRAUD"],
                                              "stages": [
        {"name": "notice", "kind": "initial", "clock_start": "detected_at", "offset": "4h"},
        {"name": "full", "kind": "update", "clock_start": "previous_delivered", "offset": "72h"}]}]},
        actor=Actor.system("t"), destination=destination)
    incident = make_incident(severity="SEV-3", category="FRAUD")
    notice = Report.objects.get(incident=incident, stage_name="notice")
    full = Report.objects.get(incident=incident, stage_name="full")
    assert full.due_at is None and full.next_attempt_at is None
    report_deliver(report_id=notice.pk)
    notice.refresh_from_db()
    full.refresh_from_db()
    assert full.clock_started_at == notice.delivered_at and full.due_at == notice.delivered_at + timedelta(hours=72)
    assert full.next_attempt_at is not None


def test_child_safety_to_a_normal_destination_is_refused_permanently(default_destination):
    incident = make_incident(category="CHILD_SAFETY", severity="SEV-0")
    assert not Report.objects.filter(incident=incident).exists()  # the rules never open one
    rule = default_destination.rules.first()
    report = Report.objects.create(incident=incident, destination=default_destination, rule=rule,
                                   stage_name="forced", stage_kind="initial", status=ReportStatus.PENDING,
                                   next_attempt_at=timezone.now(), due_at=timezone.now() + timedelta(hours=1))
    assert report_deliver(report_id=report.pk).outcome == "permanent"
    report.refresh_from_db()
    assert report.status == ReportStatus.FAILED and "ChildSafety" in report.last_error and report.payload == ""


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
            self.messages.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as probe:  # aiosmtpd checks readiness by connecting: it needs a real port number
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Keep()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = False
    try:
        yield handler
    finally:
        controller.stop()


def test_the_email_fallback_is_used_when_the_primary_fails_near_the_deadline(db, smtp_server, settings):
    import socket

    with socket.socket() as probe:  # a port with nothing listening: connection refused
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    fallback = make_destination("authority-a-mail", transport="email", address="duty@authority.example",
                                secret="", rules=None)
    make_destination("authority-a", address=f"http://127.0.0.1:{dead_port}/webhook", fallback=fallback)
    settings.MIR_FALLBACK_THRESHOLD_SECONDS = 3600
    report = _early_notice(make_incident(severity="SEV-1"))
    assert report_deliver(report_id=report.pk).outcome == "transient"  # the primary is down
    # Not yet close to the deadline: the primary is tried again, not the fallback.
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
    assert report_deliver(report_id=report.pk).outcome == "transient"
    assert not smtp_server.messages
    Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now(),
                                               due_at=timezone.now() + timedelta(minutes=30))
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    last = report.attempts.order_by("-number").first()
    assert last.via_fallback and last.address == "duty@authority.example"
    [message] = smtp_server.messages
    assert message.rcpt_tos == ["duty@authority.example"]
    assert report.payload_sha256 in message.content.decode() and str(report.public_id) in message.content.decode()


# --- One delivery's transactions, locks and connections (docs/performance.md, "Delivery") -------------
def _broken_sync(**kwargs):
    raise RuntimeError("obligations bug")


def test_a_failure_opening_the_next_stage_still_records_the_delivery_and_is_raised(receiver, monkeypatch):
    destination, ledger = receiver
    # Under the default rules an SEV-0 update's clock starts when the initial report is delivered.
    report = Report.objects.get(incident=make_incident(severity="SEV-0"), stage_name="initial")
    monkeypatch.setattr("reporting.services.delivery.obligations_sync", _broken_sync)
    with pytest.raises(RuntimeError, match="obligations bug"):
        report_deliver(report_id=report.pk)
    report.refresh_from_db()
    assert report.status == ReportStatus.DELIVERED and report.attempt_count == 1 and report.lease_token is None
    assert [e["webhook_id"] for e in ledger.entries()] == [str(report.public_id)]


def test_a_delivery_that_starts_no_clock_skips_the_obligations_sync(receiver, monkeypatch):
    """The SEV-1 early notice starts no other stage's clock: delivering it does not recompute obligations,
    while the SEV-0 initial (previous test) does, and opens the update it starts."""
    report = _early_notice(make_incident(severity="SEV-1"))
    monkeypatch.setattr("reporting.services.delivery.obligations_sync", _broken_sync)
    assert report_deliver(report_id=report.pk).outcome == "delivered"
    monkeypatch.undo()
    initial = Report.objects.get(incident=make_incident(severity="SEV-0"), stage_name="initial")
    assert report_deliver(report_id=initial.pk).outcome == "delivered"
    initial.refresh_from_db()
    update = Report.objects.get(incident=initial.incident, stage_name="update")
    assert update.clock_started_at == initial.delivered_at and update.due_at == initial.delivered_at + timedelta(hours=24)


def _other_session_locks_destination(destination_id: int, mode: str):
    """A second PostgreSQL session holding a row lock on the destination until it is closed."""
    import psycopg

    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in {"dbname", "user", "host", "port", "password"}})
    other.execute(f"SELECT id FROM reporting_destination WHERE id = %s {mode}", [destination_id])
    return other


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_freeze_waits_for_a_destination_change_but_not_for_another_freeze():
    from django.db.utils import OperationalError

    from reporting.services.delivery import report_freeze

    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with `make test`")
    destination = make_destination()
    first, second = (_early_notice(make_incident(severity="SEV-1", title=f"i{i}")) for i in range(2))
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
    try:
        # Another freeze holds a share lock on the destination: this one proceeds.
        other = _other_session_locks_destination(destination.pk, "FOR SHARE")
        try:
            assert report_freeze(report_id=first.pk).frozen_at is not None
        finally:
            other.close()
        # destination_update holds it (SELECT ... FOR UPDATE): the freeze waits, here until its lock timeout.
        other = _other_session_locks_destination(destination.pk, "FOR UPDATE")
        try:
            with pytest.raises(OperationalError, match="lock timeout"):
                report_freeze(report_id=second.pk)
        finally:
            other.close()
        second.refresh_from_db()
        assert second.frozen_at is None and second.payload == ""
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


@pytest.mark.django_db(transaction=True)
def test_workers_keep_their_database_connection_across_tasks_until_it_is_too_old():
    import time
    from types import SimpleNamespace

    from celery.fixups.django import DjangoWorkerFixup

    from reporting.celery import app
    from reporting.tasks import release_stale_connections

    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60  # a connection younger than CONN_MAX_AGE (60 s by default)
    opened = connection.connection
    fixup = DjangoWorkerFixup(app)
    for _ in range(3):  # what Celery's fix-up and our handler do around each task
        fixup.close_database()
        release_stale_connections(sender=task)
    assert connection.connection is opened
    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE
    release_stale_connections(sender=SimpleNamespace(request=SimpleNamespace(is_eager=True)))
    assert connection.connection is opened  # eager calls (tests, a shell) are left alone
    release_stale_connections(sender=task)
    assert connection.connection is None
