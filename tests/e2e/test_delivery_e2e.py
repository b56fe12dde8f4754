"""Delivery end to end, with real processes: an incident POSTed to gunicorn reaches the sandbox receiver
(webhook, both signatures verified) and a real TAXII 2.1 server, through Celery workers and beat; and
two beats with three workers racing on the same due stages deliver every report exactly once.

Each test compares what the authorities received (the receiver's ledger, the TAXII collection) with the
database: every delivered report arrived under its own id, a repeat is recognisable as a duplicate of
that id, and nothing is lost. The harness is tests/e2e/stack.py.
"""
from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from incidents.models import Incident
from reporting.models import DeliveryAttempt
from tests.conftest import make_detector, valid_body
from tests.e2e.stack import (
    Stack,
    all_delivered,
    assert_ledger_matches_db,
    assert_taxii_matches_db,
    sendable_reports,
    wait_until,
)
from tests.reporting.conftest import make_destination

pytestmark = pytest.mark.e2e


def sev1(title: str = "Intrusion tooling written with the model") -> dict:
    return valid_body(title=title, category="CYBER", severity="SEV-1",
                      summary="Accounts used the model to write and test an intrusion toolkit.")


def test_an_incident_posted_to_the_api_reaches_a_webhook_and_a_taxii_authority(transactional_db, tmp_path):
    with Stack(tmp_path) as stack:
        stack.up(taxii=True)
        webhook = make_destination("authority-a", address=stack.webhook_url, secret=stack.secret)
        assert stack.taxii is not None
        taxii = make_destination("authority-b", transport="taxii", address=stack.taxii.collection_url(),
                                 username=stack.taxii.username, secret=stack.taxii.password)
        _, token = make_detector("classifier-e2e")

        key, body = str(uuid.uuid4()), sev1()
        created = stack.post_incident(token, body, key=key)
        assert created.status_code == 201, created.text
        replayed = stack.post_incident(token, body, key=key)
        assert replayed.status_code == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
        assert replayed.json()["id"] == created.json()["id"]
        incident = Incident.objects.get(public_id=created.json()["id"])

        # SEV-1 under the default rules: an early notice to each authority, sent without approval.
        reports = sendable_reports()
        assert {(r.destination.name, r.stage_name) for r in reports} == {("authority-a", "early_notice"),
                                                                         ("authority-b", "early_notice")}
        assert all(r.incident_id == incident.pk for r in reports)
        wait_until(lambda: all_delivered(2), 30, what="both early notices delivered", stack=stack)

        by_id = assert_ledger_matches_db(stack, webhook)
        assert_taxii_matches_db(stack, taxii)
        for report in sendable_reports():
            assert report.attempt_count == 1 and not report.late and report.delivered_at <= report.due_at
            [attempt] = report.attempts.all()
            assert attempt.outcome == "delivered" and attempt.address == report.destination.address
        [sent] = sendable_reports(destination=webhook)
        entry = by_id[str(sent.public_id)]
        assert entry["verified"] and entry["duplicates"] == 0 and entry["document"]["severity"] == "SEV-1"
        assert entry["document"]["incident_reference"] == incident.reference
        assert sent.receipt["duplicate"] is False and sent.attempts.get().http_status == 200
        # The receiver kept the very bytes the database froze and signed.
        raw = httpx.get(f"{stack.receiver_url}/ledger/{sent.public_id}", timeout=5)
        assert raw.content == sent.payload.encode("utf-8")
        [via_taxii] = sendable_reports(destination=taxii)
        assert via_taxii.attempts.get().http_status == 202 and via_taxii.receipt["failure_count"] == 0


def _task_results(stack: Stack, task: str) -> list[str]:
    text = "".join(p.output() for p in stack.procs if p.name.startswith("worker"))
    return re.findall(rf"Task reporting\.{task}\[[^\]]+\] succeeded in [0-9.e-]+s: '?(\w+)'?", text)


def test_two_beats_and_three_workers_racing_deliver_every_report_once(transactional_db, tmp_path):
    with Stack(tmp_path) as stack:
        web, receiver = stack.start_web(), stack.start_receiver()
        beats = [stack.start_beat("beat1"), stack.start_beat("beat2")]
        stack.wait_ready(web, *beats)
        webhook = make_destination("authority-a", address=stack.webhook_url, secret=stack.secret)
        _, token = make_detector("classifier-race")

        def post(index: int) -> int:
            return stack.post_incident(token, sev1(f"Intrusion tooling, cluster {index}")).status_code

        # Phase 1, no worker yet (as after a worker outage): 15 fast-path messages, and sweep tasks from
        # both beats every second, pile up in the queue.
        with ThreadPoolExecutor(max_workers=5) as pool:
            assert list(pool.map(post, range(15))) == [201] * 15
        wait_until(lambda: all(b.output().count("Sending due task sweep-due-reports") >= 2 for b in beats), 15,
                   what="both beats to queue sweeps", stack=stack)
        # Then three workers (six pool processes) take the backlog at once: the sweeps race each other and
        # the fast path for the same due rows.
        workers = [stack.start_worker(f"worker{i}") for i in (1, 2, 3)]
        stack.wait_ready(*workers)
        wait_until(lambda: all_delivered(15), 30, what="the first 15 reports delivered", stack=stack)

        # Phase 2, everything running: new rows, raced for by the fast path and two sweepers.
        with ThreadPoolExecutor(max_workers=5) as pool:
            assert list(pool.map(post, range(15, 30))) == [201] * 15
        wait_until(lambda: all_delivered(30), 45, what="all 30 reports delivered", stack=stack)
        time.sleep(2)  # a few more sweeps over delivered rows: none may be sent again
        stack.assert_running("after the deliveries")
        assert all(p.alive() for p in (receiver, *workers, *beats))

        by_id = assert_ledger_matches_db(stack, webhook)
        assert len(by_id) == 30
        # Nothing failed, so each report should have been sent once; were a lease to run out on a very slow
        # machine, the repeat is a recognisable duplicate (checked above) and still one delivery in the DB.
        repeats = sum(entry["duplicates"] for entry in by_id.values())
        assert DeliveryAttempt.objects.count() == 30 + repeats
        # One fast-path message per report, plus one task per row a sweeper handed out (only while no lease
        # is held). Exactly one task delivers each report; every other finds its row taken (skipped).
        def tasks_done() -> tuple[int, list[str]] | None:
            handed_out = sum(int(n) for n in _task_results(stack, "sweep_due_reports"))
            results = _task_results(stack, "deliver_report")
            return (handed_out, results) if len(results) >= 30 + handed_out else None

        handed_out, results = wait_until(tasks_done, 10, what="the task log", stack=stack)
        assert results.count("delivered") == 30, results
        if not repeats:  # no lease ran out: a row handed out twice would show as a surplus task
            assert results.count("skipped") == handed_out <= 30 and len(results) == 30 + handed_out, results
        for beat in beats:
            assert "Sending due task sweep-due-reports" in beat.output()
