"""Faults, end to end with real processes: nothing is lost when the receiver fails or disappears, when a
worker is SIGKILLed in the middle of a delivery, or when the broker goes away while incidents arrive.

PostgreSQL is the truth and the broker only a doorbell: in each case the reports wait in the database
and are delivered once the fault clears (by retries and the sweeper), and the receiver's ledger agrees
with the database. The harness is tests/e2e/stack.py; the shared Redis is never stopped: the broker test
(and the kill test, whose unacknowledged message must not linger) use a private redis-server.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.utils import timezone

from reporting.models import Report
from tests.conftest import make_detector, valid_body
from tests.e2e.stack import Stack, all_delivered, assert_ledger_matches_db, sendable_reports, wait_until
from tests.reporting.conftest import make_destination

pytestmark = pytest.mark.e2e

# Publishing gives up after CELERY_BROKER_CONNECTION_TIMEOUT (2 s), then pauses (reporting/dispatch.py).
PUBLISH_GIVE_UP_SECONDS = 2.0


def sev1(index: int) -> dict:
    return valid_body(title=f"Intrusion tooling, cluster {index}", category="CYBER", severity="SEV-1")


def attempted(report_ids: list[int], **attempt: object) -> bool:
    reports = Report.objects.filter(pk__in=report_ids)
    return all(r.attempts.filter(**attempt).exists() for r in reports)


def connections_to(port: int) -> int:
    """Established loopback TCP connections accepted on ``port`` (from /proc: the receiver is another process)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "01")


def test_a_receiver_that_fails_then_disappears_gets_everything_once_it_is_back(transactional_db, tmp_path):
    with Stack(tmp_path) as stack:
        stack.up(mode="fail")  # the authority answers 503 to every delivery
        webhook = make_destination("authority-a", address=stack.webhook_url, secret=stack.secret)
        _, token = make_detector("classifier-faults")
        for index in (1, 2):
            assert stack.post_incident(token, sev1(index)).status_code == 201
        failing = [r.pk for r in sendable_reports()]
        wait_until(lambda: attempted(failing, outcome="transient", http_status=503), 20,
                   what="503s for the first two reports", stack=stack)

        # Then it goes away altogether: connections are refused.
        [receiver] = [p for p in stack.procs if p.name == "receiver"]
        stack.stop(receiver)
        for index in (3, 4):
            assert stack.post_incident(token, sev1(index)).status_code == 201
        refused = [r.pk for r in sendable_reports() if r.pk not in failing]
        wait_until(lambda: attempted(refused, outcome="transient", error_class="ConnectError"), 20,
                   what="refused connections for the other two", stack=stack)
        now = timezone.now()
        for report in sendable_reports():
            # Waiting in the database, not in the broker: pending, unleased, retried before the deadline.
            assert report.status == "pending" and report.lease_token is None, report
            assert now < report.next_attempt_at < report.due_at
            assert report.frozen_at is not None and report.last_error

        stack.start_receiver()  # back, on the same address, answering normally
        wait_until(lambda: all_delivered(4), 45, what="all four delivered after the receiver came back", stack=stack)

        by_id = assert_ledger_matches_db(stack, webhook)
        assert len(by_id) == 4 and all(entry["duplicates"] == 0 for entry in by_id.values())
        for report in sendable_reports():
            outcomes = list(report.attempts.values_list("outcome", flat=True))
            assert outcomes[0] == "transient" and outcomes[-1] == "delivered" and outcomes.count("delivered") == 1
            assert not report.late and report.attempt_count == len(outcomes)


def test_a_worker_killed_in_the_middle_of_a_delivery_loses_nothing(transactional_db, tmp_path):
    with Stack(tmp_path, lease_seconds=10) as stack:
        stack.start_redis()
        stack.up(mode="slow", delay_seconds=4)  # the authority takes 4 s to answer
        webhook = make_destination("authority-a", address=stack.webhook_url, secret=stack.secret)
        _, token = make_detector("classifier-kill")
        assert stack.post_incident(token, sev1(1)).status_code == 201
        [report] = sendable_reports()

        def in_flight() -> Report | None:
            report.refresh_from_db()
            sending = report.frozen_at and report.lease_token and connections_to(stack.receiver_port)
            return report if sending else None

        wait_until(in_flight, 20, what="the worker to claim, freeze and connect", stack=stack, interval=0.05)
        time.sleep(0.5)  # the request is now inside the receiver, which holds it for 4 s
        lease_expires_at = report.lease_expires_at
        assert report.status == "pending" and report.attempt_count == 0 and lease_expires_at > timezone.now()
        [worker] = [p for p in stack.procs if p.name == "worker1"]
        stack.kill(worker)  # SIGKILL: the main process and its pool children, with no chance to record anything
        assert worker.process.returncode == -9

        stack.receiver_control(mode="ok")
        replacement = stack.start_worker("worker2")
        stack.wait_ready(replacement)
        # Nobody may send it while the dead worker's lease holds; after it, the sweeper re-queues it.
        wait_until(lambda: all_delivered(1), 40, what="the report delivered by the new worker", stack=stack)
        report.refresh_from_db()
        assert report.delivered_at > lease_expires_at
        [attempt] = report.attempts.all()  # the killed send left no attempt; the retry is the only one
        assert attempt.outcome == "delivered" and attempt.started_at > lease_expires_at
        assert "sweep_due_reports" in replacement.output() and "'delivered'" in replacement.output()

        # The receiver got the killed send too (it finished its 4 s after the sender was gone): the
        # retry, with the same id and the same bytes, is recognisably a duplicate.
        by_id = assert_ledger_matches_db(stack, webhook, every_send_recorded=False)
        entry = by_id[str(report.public_id)]
        assert entry["duplicates"] == 1 and entry["mismatched_duplicates"] == 0
        assert report.receipt["duplicate"] is True and report.receipt["receipt_id"] == entry["receipt_id"]


def test_the_api_keeps_accepting_while_the_broker_is_down_and_nothing_is_lost(transactional_db, tmp_path):
    with Stack(tmp_path) as stack:
        redis = stack.start_redis()  # ours: the machine's shared Redis is never stopped
        stack.up()
        # Two authorities: a SEV-1 incident owes each an early notice, so each request rings the doorbell twice.
        authorities = [make_destination(name, address=stack.webhook_url, secret=stack.secret)
                       for name in ("authority-a", "authority-c")]
        _, token = make_detector("classifier-broker")
        assert stack.post_incident(token, sev1(0)).status_code == 201
        wait_until(lambda: all_delivered(2), 20, what="the first reports delivered", stack=stack)

        port = stack.redis_port
        stack.stop(redis)
        durations = []
        for index in range(1, 5):
            started = time.monotonic()
            answer = stack.post_incident(token, sev1(index), timeout=30)
            durations.append(time.monotonic() - started)
            assert answer.status_code == 201, answer.text
        # The doorbell gives up once per request however many reports it owes (two here): a request takes less
        # than two give-ups, whatever else the machine is doing. The reports are safe in PostgreSQL.
        assert max(durations) < 2 * PUBLISH_GIVE_UP_SECONDS, durations
        waiting = [r for r in sendable_reports() if r.status != "delivered"]
        assert len(waiting) == 8
        assert all(r.status == "pending" and r.attempt_count == 0 and r.lease_token is None for r in waiting)

        # An operator runs the sweeper by hand meanwhile: it finds the eight, cannot enqueue them, gives up
        # after one publish timeout (not one per report), and leaves them due: no lease for a task that
        # does not exist, which would hold them back for the whole dispatch lease after the broker returns.
        started = time.monotonic()
        swept = stack.manage("dispatch_due_reports")
        assert swept.returncode == 0 and "8 due, 0 enqueued" in swept.stdout, swept.stdout + swept.stderr[-3000:]
        # Start-up, then one give-up: less than the eight give-ups one per report would take.
        assert time.monotonic() - started < len(waiting) * PUBLISH_GIVE_UP_SECONDS
        assert not Report.objects.filter(pk__in=[r.pk for r in waiting], lease_token__isnull=False).exists()

        stack.start_redis(port=port)  # an empty broker: every message sent before is gone
        wait_until(lambda: all_delivered(10), 45, what="the sweeper to deliver what arrived meanwhile", stack=stack)
        by_id = assert_ledger_matches_db(stack, *authorities)
        assert len(by_id) == 10 and all(entry["duplicates"] == 0 for entry in by_id.values())
        for report in waiting:
            report.refresh_from_db()
            assert report.status == "delivered" and report.attempt_count == 1
