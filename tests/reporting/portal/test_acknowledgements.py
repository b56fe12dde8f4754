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


def test_an_unknown_id_is_404(client_a, world):
    assert client_a.post("/portal/reports/00000000-0000-0000-0000-000000000000/acknowledge/").status_code == 404
    assert client_a.post("/portal/reports/not-a-uuid/acknowledge/").status_code == 404


def test_get_is_refused_and_anonymous_is_sent_to_sign_in(client_a, report_a):
    assert client_a.get(_ack_url(report_a)).status_code == 405
    response = Client().post(_ack_url(report_a))
    assert response.status_code == 302 and response.url.startswith(reverse("portal:login"))
    assert not Acknowledgement.objects.exists()


def test_staff_are_not_reviewers(client, staff_user, report_a):
    client.force_login(staff_user)
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
