#!/usr/bin/env python3
"""TAXII feed cost: how long one objects page takes as an authority's delivered reports grow.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mir_rf CACHE_URL=redis://127.0.0.1:6379/7 MIR_ENV=test \
        .venv/bin/python scripts/bench_taxii_feed.py [--reports 300] [--step 100]

Flushes the database named by DATABASE_URL (it must not hold anything you need) and migrates it; makes
one authority with a webhook destination, a reviewer and a reviewer token; then, in steps, files SEV-1
incidents and delivers each early notice through the real path (claim, freeze, sign, record; the send
itself is a stub that accepts). After each step it times, through Django's test client and the full
middleware stack, GET objects/?limit=100 with the per-report cache empty (cold: every report mapped)
and again warm (median of 5), plus the number of SQL queries of a warm request.
Give it a CACHE_URL (a Redis database of your own: the script clears it): Django's local-memory cache
keeps 300 entries, fewer than the two per report the feed caches, so without Redis every request maps
every report again. Figures and their reading: docs/taxii.md ("Cost").
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reporting.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=300)
    parser.add_argument("--step", type=int, default=100)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from incidents.actors import Actor
    from incidents.services.intake import incident_create
    from reporting.choices import AttemptOutcome
    from reporting.models import Report
    from reporting.portal.models import Authority
    from reporting.portal.services.reviewers import reviewer_create
    from reporting.portal.services.tokens import reviewer_token_issue
    from reporting.services.delivery import report_deliver
    from reporting.services.destinations import destination_create
    from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load
    from reporting.transports.base import SendResult

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    system = Actor.system("bench")
    destination = destination_create(actor=system, name="bench-a", authority="Bench authority", transport="webhook",
                                     address="http://127.0.0.1:9/hook", secret="whsec_" + "A" * 44)
    rules_load(data=read_rules_file(DEFAULT_RULES), actor=system, destination=destination)
    reviewer = reviewer_create(actor=system, username="bench_reviewer", email="r@bench.example",
                               authority=Authority.objects.get(name="Bench authority"),
                               password="a long benchmark passphrase 42").reviewer
    secret = reviewer_token_issue(actor=system, reviewer=reviewer,
                                  expires_at=timezone.now() + timedelta(days=1)).secret
    accepted = SendResult(outcome=AttemptOutcome.DELIVERED, http_status=200, receipt={"status": "accepted"},
                          response_excerpt="{}")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    url = f"/taxii2/reports/collections/{reviewer.authority.public_id}/objects/?limit=100"

    def timed() -> float:
        started = time.perf_counter()
        response = client.get(url)
        assert response.status_code == 200, response.content[:200]
        return (time.perf_counter() - started) * 1000

    print(f"{'reports':>8} {'cold ms':>9} {'warm ms (median of 5)':>22} {'queries':>8}")
    made = 0
    with mock.patch("reporting.services.delivery._send", return_value=(accepted, 5)), \
            mock.patch("reporting.dispatch.enqueue"):
        while made < args.reports:
            for n in range(min(args.step, args.reports - made)):
                incident = incident_create(actor=system, fields={
                    "title": f"Bench incident {made + n}", "summary": "Benchmark.", "category": "CYBER",
                    "severity": "SEV-1", "detected_at": timezone.now() - timedelta(minutes=5),
                    "model_name": "Mythos 5", "techniques": ["AML.T0054"]}).incident
                report = Report.objects.get(incident=incident, stage_name="early_notice")
                Report.objects.filter(pk=report.pk).update(next_attempt_at=timezone.now())
                assert report_deliver(report_id=report.pk).outcome == "delivered"
            made += min(args.step, args.reports - made)
            cache.clear()
            cold = timed()
            warm = statistics.median(timed() for _ in range(5))
            with CaptureQueriesContext(connection) as queries:
                timed()
            print(f"{made:>8} {cold:>9.1f} {warm:>22.1f} {len(queries):>8}")


if __name__ == "__main__":
    main()
