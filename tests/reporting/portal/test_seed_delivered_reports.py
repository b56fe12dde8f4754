"""The seeding command behind the portal benchmark: valid signed rows, varied content, clear refusals."""
from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from incidents.models import AuditEvent, Incident
from reporting.choices import ReportStatus
from reporting.models import Report
from reporting.portal.documents import signature_check
from tests.reporting.portal.conftest import AUTHORITY_A, AUTHORITY_B


def seed(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("seed_delivered_reports", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seeds_signed_varied_reports_that_the_portal_shows(world, client_a):
    out, err = seed("--count", "25", "--authority", AUTHORITY_A, "--batch", "10")
    assert "seeded 10/25" in err and "seeded 25/25" in err
    assert "Added 25 delivered reports for Authority A" in out and "now has 25 delivered reports" in out
    seeded = list(Report.objects.filter(status=ReportStatus.DELIVERED, destination__authority__name=AUTHORITY_A)
                  .select_related("incident"))
    assert len(seeded) == 25
    assert len({r.sent_category for r in seeded}) > 3 and len({r.sent_severity for r in seeded}) > 2
    assert len({r.sent_title for r in seeded}) == 25
    assert max(r.delivered_at for r in seeded) - min(r.delivered_at for r in seeded) > (
        timedelta(days=60))
    for report in seeded[:5]:
        check = signature_check(report)
        assert check.state == "valid" and check.digest_matches
        identity = json.loads(report.payload)["document"]["identity"]
        assert identity["report_id"] == str(report.public_id)
        assert identity["incident_reference"] == report.incident.reference == report.sent_reference
        assert report.incident.title == report.sent_title
    assert not Report.objects.filter(status=ReportStatus.DELIVERED, destination__authority__name=AUTHORITY_B).exists()
    detail = client_a.get(reverse("portal:report-detail", args=[seeded[0].public_id]))
    assert detail.status_code == 200 and seeded[0].sent_title in detail.content.decode()
    assert AuditEvent.objects.filter(action="reports_seeded").count() == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--count", "0", "--authority", AUTHORITY_A], "count must be at least 1"),
    (["--count", "-5", "--authority", AUTHORITY_A], "count must be at least 1"),
    (["--count", "5", "--authority", AUTHORITY_A, "--batch", "0"], "batch must be between"),
    (["--count", "5", "--authority", AUTHORITY_A, "--batch", "50001"], "batch must be between"),
    (["--count", "5", "--authority", "No such authority"], "no authority named"),
])
def test_bad_arguments_are_refused_and_nothing_is_stored(world, args, message):
    before = (Incident.objects.count(), Report.objects.count())
    with pytest.raises(CommandError, match=message):
        seed(*args)
    assert (Incident.objects.count(), Report.objects.count()) == before


@pytest.mark.parametrize("args", [["--authority", AUTHORITY_A], ["--count", "5"], ["--count", "many", "--authority", "A"]])
def test_missing_or_malformed_arguments_are_refused(world, args):
    with pytest.raises(CommandError):
        seed(*args)


def test_an_authority_without_destination_is_refused(world):
    from reporting.portal.models import Authority

    Authority.objects.create(name="Empty authority", slug="empty-authority")
    with pytest.raises(CommandError, match="has no destination"):
        seed("--count", "5", "--authority", "Empty authority")
    assert not Incident.objects.exists()


def test_refused_in_production(world, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused with MIR_ENV=production"):
        seed("--count", "5", "--authority", AUTHORITY_A)
    assert not Incident.objects.exists()
