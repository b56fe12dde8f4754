"""Acknowledging a delivered report: once per report for the whole authority, idempotent, audited, scoped."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from incidents.actors import Actor
from incidents.models import AuditEvent
from reporting.portal.models import Acknowledgement, Authority
from reporting.portal.services.acknowledgements import report_acknowledge
from reporting.portal.services.reviewers import reviewer_create
from tests.conftest import login_verified
from tests.reporting.portal.conftest import PASSWORD, SYSTEM, pending_report_a, sign_in


def _ack_url(report) -> str:  # noqa: ANN001
    return reverse("portal:report-acknowledge", args=[report.public_id])


def _detail(report) -> str:  # noqa: ANN001
    return reverse("portal:report-detail", args=[report.public_id])


def test_a_reviewer_acknowledges_and_the_page_says_who_and_when(client_a, report_a, world):
    page = client_a.get(_detail(report_a))
    assert b"Not acknowledged yet" in page.content and b"Acknowledge receipt" in page.content
    response = client_a.post(_ack_url(report_a))
    assert response.status_code == 302 and response.url.startswith(_detail(report_a))
    ack = Acknowledgement.objects.get(report=report_a)
    assert ack.reviewer == world.reviewer_a.reviewer and ack.acknowledged_at.tzinfo is not None
    [event] = AuditEvent.objects.filter(action="report_acknowledged")
    assert event.actor_user == world.reviewer_a.reviewer.user and event.incident_id == report_a.incident_id
    assert event.changes["report"] == str(report_a.public_id)
    page = client_a.get(response.url)
    text = page.content.decode()
    assert "Acknowledged by <strong>reviewer_a</strong>" in text and "You acknowledged this report" in text
    assert "Acknowledge receipt" not in text


def test_acknowledging_again_or_by_a_colleague_changes_nothing(client_a, report_a, world):
    client_a.post(_ack_url(report_a))
    client_a.post(_ack_url(report_a))
    colleague = reviewer_create(actor=SYSTEM, username="reviewer_a2", email="a2@authority-a.example",
                                authority=Authority.objects.get(name="Authority A"), password=PASSWORD)
    other = Client()
    sign_in(other, colleague)
    response = other.post(_ack_url(report_a), follow=True)
    assert b"already acknowledged" in response.content and b"Acknowledged by <strong>reviewer_a</strong>" in response.content
    assert Acknowledgement.objects.filter(report=report_a).count() == 1
    assert Acknowledgement.objects.get(report=report_a).reviewer == world.reviewer_a.reviewer
    assert AuditEvent.objects.filter(action="report_acknowledged").count() == 1


def test_another_authority_cannot_acknowledge_and_nothing_is_stored(client_b, report_a):
    assert client_b.post(_ack_url(report_a)).status_code == 404
    assert not Acknowledgement.objects.exists()
    assert not AuditEvent.objects.filter(action="report_acknowledged").exists()


def test_an_undelivered_report_cannot_be_acknowledged(client_a, world):
    report = pending_report_a(world)
    assert client_a.post(_ack_url(report)).status_code == 404
    assert not Acknowledgement.objects.exists()


def test_another_authoritys_report_by_get_still_ends_in_404(client_b, report_a):
    response = client_b.get(_ack_url(report_a), follow=True)
    assert response.status_code == 404 and not Acknowledgement.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_acknowledgements_at_once_make_one_and_the_second_is_told(world, report_a):
    """The second request's insert waits on the first's uncommitted row (the unique report column), then
    fails; the service answers with the first acknowledgement instead of an error."""
    import threading

    from django.db import connection, transaction
    from django.utils import timezone

    from tests.e2e.stack import wait_until

    first_inserted, release = threading.Event(), threading.Event()
    results = {}

    def first() -> None:
        try:
            with transaction.atomic():
                Acknowledgement.objects.create(report=report_a, reviewer=world.reviewer_a.reviewer,
                                               acknowledged_at=timezone.now())
                first_inserted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def second() -> None:
        try:
            reviewer = world.reviewer_a.reviewer
            results["second"] = report_acknowledge(actor=Actor.for_user(reviewer.user), reviewer=reviewer,
                                                   report=report_a)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_inserted.wait(timeout=30)
    two = threading.Thread(target=second)
    two.start()

    def second_is_waiting() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            return cursor.fetchone()[0] > 0

    wait_until(second_is_waiting, 30, what="the second acknowledgement to wait on the first's row")
    release.set()
    one.join(timeout=30)
    two.join(timeout=30)
    assert results["second"].created is False
    assert Acknowledgement.objects.count() == 1
    assert not AuditEvent.objects.filter(action="report_acknowledged").exists()


def test_an_unknown_id_is_404(client_a, world):
    assert client_a.post("/portal/reports/00000000-0000-0000-0000-000000000000/acknowledge/").status_code == 404
    assert client_a.post("/portal/reports/not-a-uuid/acknowledge/").status_code == 404


def test_anonymous_is_sent_to_sign_in_and_comes_back_to_the_report(world, report_a):
    client = Client()
    response = client.post(_ack_url(report_a))
    assert response.status_code == 302 and response.url.startswith(reverse("portal:login"))
    assert not Acknowledgement.objects.exists()
    # After signing in, the browser GETs the form's address: it leads to the page, and writes nothing.
    sign_in(client, world.reviewer_a)
    response = client.get(_ack_url(report_a))
    assert response.status_code == 302 and response.url == f"{_detail(report_a)}#acknowledgement-heading"
    assert not Acknowledgement.objects.exists()
    assert client.put(_ack_url(report_a)).status_code == 405


def test_staff_are_not_reviewers(client, staff_user, report_a):
    login_verified(client, staff_user)
    response = client.post(_ack_url(report_a))
    assert response.status_code == 302 and response.url.startswith(reverse("portal:login"))
    assert not Acknowledgement.objects.exists()


def test_without_the_csrf_token_nothing_is_stored(world, report_a):
    client = Client(enforce_csrf_checks=True)
    sign_in_csrf = client.get(reverse("portal:login"))  # the login form sets the cookie
    token = sign_in_csrf.cookies["csrftoken"].value
    username = world.reviewer_a.reviewer.user.get_username()
    client.post(reverse("portal:login"), {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
    from tests.reporting.portal.conftest import totp_now

    client.post(reverse("portal:login-code"), {"token": totp_now(world.reviewer_a),
                                               "csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert client.get(_detail(report_a)).status_code == 200
    assert client.post(_ack_url(report_a)).status_code == 403
    assert not Acknowledgement.objects.exists()
    token = client.cookies["csrftoken"].value
    assert client.post(_ack_url(report_a), {"csrfmiddlewaretoken": token}).status_code == 302
    assert Acknowledgement.objects.count() == 1


def test_the_service_refuses_out_of_scope_reports(world, report_b):
    reviewer = world.reviewer_a.reviewer
    with pytest.raises(ValidationError):
        report_acknowledge(actor=Actor.for_user(reviewer.user), reviewer=reviewer, report=report_b)
    assert not Acknowledgement.objects.exists()


@pytest.mark.parametrize(("value", "expected"), [("yes", {"acked"}), ("no", {"open"}), ("", {"acked", "open"})])
def test_the_list_filters_on_acknowledgement(client_a, world, value, expected):
    from tests.reporting.portal.conftest import delivered_report

    acked = delivered_report("authority-a", title="Acknowledged one")
    delivered_report("authority-a", title="Waiting one")
    client_a.post(_ack_url(acked))
    response = client_a.get(reverse("portal:report-list"), {"acknowledged": value})
    assert response.status_code == 200
    text = response.content.decode()
    assert ("Acknowledged one" in text) == ("acked" in expected)
    assert ("Waiting one" in text) == ("open" in expected)
    if "acked" in expected:
        assert '<span class="tag ack">acknowledged</span>' in text


@pytest.mark.parametrize("value", ["maybe", "1", "YES", "x" * 300])
def test_a_bad_acknowledged_filter_is_a_clear_400(client_a, report_a, value):
    response = client_a.get(reverse("portal:report-list"), {"acknowledged": value})
    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
