"""What one delivery costs the database (docs/performance.md, "Delivery"): pinned so a change that adds a
statement or a lazy load to the hot path is seen, not found later in a benchmark."""
from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from reporting.models import Receipt
from reporting.services.delivery import report_deliver
from reporting.services.obligations import active_rules
from tests.conftest import make_incident
from tests.reporting.test_delivery import _early_notice, receiver  # noqa: F401  (fixture)

# Claim and freeze: 10 statements in one transaction (lock the incident; lock and read the report with what
# the document needs, its destination's authority included; accounts, indicators, evidence; share-lock the
# destination; version; the sealed audit-chain head the document publishes; signing key; one UPDATE with the
# lease and the frozen payload). Send: none. Record: 7 in another (lock and read the incident's facts; lock
# the report; attempt, receipt, status, audit event; the rule set's version, the rules being cached per
# process, to see that an SEV-1 early notice starts no other stage's clock, so no obligations sync).
# BEGIN/COMMIT are not counted (in a test they are savepoints). Every statement is prebuilt SQL
# (incidents.models.fast_rows): docs/performance.md, "Delivery".
FIRST_SEND_STATEMENTS = 17


def _statements(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_a_first_send_takes_two_transactions_and_no_lazy_loads(receiver):  # noqa: F811
    report = _early_notice(make_incident(severity="SEV-1"))
    active_rules()  # a worker's rule set is cached from its first task on: only its version is read here
    with CaptureQueriesContext(connection) as ctx:
        assert report_deliver(report_id=report.pk).outcome == "delivered"
    statements = _statements(ctx)
    assert len(statements) == FIRST_SEND_STATEMENTS, "\n".join(s[:120] for s in statements)
    # Outer transactions (savepoints here): the claim with the freeze, and the record.
    outer = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(outer) == 2  # two transactions; no savepoint for an obligations sync that has nothing to do
    # The incident is locked twice (the record reads its facts with the lock; the freeze reads it joined to
    # the report), the cached rule set's version read once, the receipt written once: more is a lazy load.
    assert sum('FROM "incidents_incident"' in s for s in statements) == 2  # the two locks, nothing lazy
    assert sum('FROM "incidents_incident"' in s and "FOR UPDATE" in s for s in statements) == 2
    assert sum(s.startswith('SELECT "reporting_reportingrule"') for s in statements) == 0
    assert sum("reporting_rule_set_version" in s for s in statements) == 1
    assert sum(s.startswith('INSERT INTO "reporting_receipt"') for s in statements) == 1
    assert Receipt.objects.filter(report=report).count() == 1


def test_a_retry_does_not_rebuild_the_document(receiver):  # noqa: F811
    destination, ledger = receiver
    from tests.reporting.test_delivery import _set_mode

    report = _early_notice(make_incident(severity="SEV-1"))
    _set_mode(ledger, mode="fail")
    assert report_deliver(report_id=report.pk).outcome == "transient"
    report.refresh_from_db()
    frozen = (report.payload, report.payload_sha256, report.signature)
    _set_mode(ledger)
    report.__class__.objects.filter(pk=report.pk).update(next_attempt_at=report.next_attempt_at.replace(year=2000))
    with CaptureQueriesContext(connection) as ctx:
        assert report_deliver(report_id=report.pk).outcome == "delivered"
    statements = _statements(ctx)
    assert not any("incidents_account" in s or "reporting_signingkey" in s for s in statements)
    report.refresh_from_db()
    assert (report.payload, report.payload_sha256, report.signature) == frozen
    assert [e["payload_sha256"] for e in ledger.entries()] == [report.payload_sha256]  # the 503 was not kept
