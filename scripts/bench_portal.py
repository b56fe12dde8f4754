"""Seed N delivered reports for one authority and time the portal's list and detail pages.

    DATABASE_URL=postgres://... MIR_ENV=test .venv/bin/python scripts/bench_portal.py --reports 100000

Runs against the database in DATABASE_URL (use a scratch one: it adds rows and never removes them).
Seeding runs ``manage.py seed_delivered_reports`` (bulk inserts of signed, varied delivered reports) up to
--reports rows for the authority "Bench authority". Prints the server time (median of a few
requests, in process through Django's test client, no network) and the query count of each page.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reporting.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_otp.oath import TOTP  # noqa: E402

from incidents.actors import Actor  # noqa: E402
from reporting.choices import ReportStatus  # noqa: E402
from reporting.models import Destination, Report  # noqa: E402
from reporting.portal.models import Authority, Reviewer  # noqa: E402
from reporting.portal.services.reviewers import reviewer_create  # noqa: E402
from reporting.services.destinations import destination_create  # noqa: E402
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load  # noqa: E402

SYSTEM = Actor.system("bench_portal")
AUTHORITY = "Bench authority"
PASSWORD = "bench portal passphrase 2026"


def seed(total: int) -> Report:
    """Make sure the bench authority has a destination, then top it up to ``total`` delivered reports with
    the seed_delivered_reports command; returns one seeded report for the detail page."""
    if not Destination.objects.filter(name="bench-portal").exists():
        destination = destination_create(actor=SYSTEM, name="bench-portal", authority=AUTHORITY,
                                         transport="webhook", address="http://127.0.0.1:9/hook",
                                         secret="whsec_" + "A" * 43)
        rules_load(data=read_rules_file(DEFAULT_RULES), actor=SYSTEM, destination=destination)
    delivered = Report.objects.filter(status=ReportStatus.DELIVERED, destination__authority__name=AUTHORITY)
    missing = total - delivered.count()
    if missing > 0:
        call_command("seed_delivered_reports", "--count", str(missing), "--authority", AUTHORITY)
        with connection.cursor() as cursor:
            # Right after a bulk insert the planner's statistics are stale.
            cursor.execute("VACUUM ANALYZE reporting_report")
            cursor.execute("VACUUM ANALYZE incidents_incident")
    return delivered.order_by("-delivered_at").first()


def timed(client: Client, url: str, runs: int = 7) -> tuple[float, int, int]:
    client.get(url)  # warm caches (templates, connection)
    times, queries, status = [], 0, 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
        queries, status = len(captured.captured_queries), response.status_code
    return statistics.median(times), queries, status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=100_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("set DATABASE_URL to a scratch database: this adds rows and never removes them")
    setup_test_environment()
    template = seed(args.reports)
    authority = Authority.objects.get(name=AUTHORITY)
    reviewer = Reviewer.objects.filter(user__username="bench-reviewer").first()
    if reviewer is None:
        issued = reviewer_create(actor=SYSTEM, username="bench-reviewer", email="bench@authority.example",
                                 authority=authority, password=PASSWORD)
        device = issued.device
    else:
        device = reviewer.user.totpdevice_set.get()
        device.last_t = -1
        device.save(update_fields=["last_t"])
        Reviewer.objects.filter(pk=reviewer.pk).update(failed_login_count=0, locked_until=None)
    client = Client()
    client.post("/portal/login/", {"username": "bench-reviewer", "password": PASSWORD})
    token = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    assert client.post("/portal/login/code/", {"token": f"{token:06d}"}).status_code == 302
    total = Report.objects.filter(status=ReportStatus.DELIVERED, destination__authority=authority).count()
    print(f"delivered reports of the authority: {total}")
    for label, url in [
        ("list, page 1", "/portal/"),
        ("list, page 50", "/portal/?page=50"),
        ("list, category=FRAUD", "/portal/?category=FRAUD"),
        ("list, delivered in one day", f"/portal/?delivered_from={timezone.now().date()}"
                                       f"&delivered_to={timezone.now().date()}"),
        ("list, search title", "/portal/?q=ransomware+negotiation"),
        ("detail", f"/portal/reports/{template.public_id}/"),
        ("download JSON", f"/portal/reports/{template.public_id}/document.json"),
    ]:
        ms, queries, status = timed(client, url)
        print(f"{label:32s} {status}  {ms:8.1f} ms  {queries:2d} queries")


if __name__ == "__main__":
    main()
