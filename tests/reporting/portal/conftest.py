"""Personas of the reviewers' portal: authorities A and B, reviewer_a / reviewer_b, delivered reports."""
from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP

from incidents.actors import Actor
from reporting.choices import AttemptOutcome, ReportStatus
from reporting.models import Report
from reporting.portal.models import Authority
from reporting.portal.services.reviewers import ReviewerIssued, reviewer_create
from reporting.services.delivery import report_deliver
from reporting.transports.base import SendResult
from tests.conftest import make_incident
from tests.reporting.conftest import make_destination

SYSTEM = Actor.system("tests")
PASSWORD = "a long reviewer passphrase 42"
AUTHORITY_A, AUTHORITY_B = "Authority A", "Authority B"


def totp_now(issued: ReviewerIssued, offset: int = 0) -> str:
    device = issued.device
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = timezone.now().timestamp() + offset * device.step
    return f"{totp.token():0{device.digits}d}"


def deliver(report: Report, *, receipt: dict | None = None) -> Report:
    """Deliver through the real path (claim, freeze, record) with a receiver that accepts."""
    accepted = SendResult(outcome=AttemptOutcome.DELIVERED, http_status=200,
                          receipt=receipt if receipt is not None else {"status": "accepted", "receipt_id": "r-1"},
                          response_excerpt='{"status": "accepted"}')
    # Later stages may wait for a clock or an approval; the portal only cares that they were delivered.
    Report.objects.filter(pk=report.pk).update(status=ReportStatus.PENDING, next_attempt_at=timezone.now())
    with mock.patch("reporting.services.delivery._send", return_value=(accepted, 12)):
        assert report_deliver(report_id=report.pk).outcome == "delivered"
    report.refresh_from_db()
    return report


def delivered_report(destination_name: str, **incident_overrides) -> Report:
    """A SEV-1 incident's early notice, delivered to the named destination (the incident owes every destination)."""
    incident = make_incident(**{"severity": "SEV-1", **incident_overrides})
    report = Report.objects.get(incident=incident, stage_name="early_notice", destination__name=destination_name)
    return deliver(report)


@dataclass
class World:
    destination_a: object
    destination_b: object
    reviewer_a: ReviewerIssued
    reviewer_b: ReviewerIssued


@pytest.fixture
def world(db) -> World:
    destination_a = make_destination("authority-a", authority=AUTHORITY_A)
    destination_b = make_destination("authority-b", authority=AUTHORITY_B)
    reviewer_a = reviewer_create(actor=SYSTEM, username="reviewer_a", email="a@authority-a.example",
                                 authority=Authority.objects.get(name=AUTHORITY_A), password=PASSWORD)
    reviewer_b = reviewer_create(actor=SYSTEM, username="reviewer_b", email="b@authority-b.example",
                                 authority=Authority.objects.get(name=AUTHORITY_B), password=PASSWORD)
    return World(destination_a, destination_b, reviewer_a, reviewer_b)


def sign_in(client: Client, issued: ReviewerIssued, *, password: str = PASSWORD) -> None:
    username = issued.reviewer.user.get_username()
    response = client.post(reverse("portal:login"), {"username": username, "password": password})
    assert response.status_code == 302 and response.url == reverse("portal:login-code"), response.content[:500]
    response = client.post(reverse("portal:login-code"), {"token": totp_now(issued)})
    assert response.status_code == 302, response.content[:500]


@pytest.fixture
def client_a(world) -> Client:
    client = Client()
    sign_in(client, world.reviewer_a)
    return client


@pytest.fixture
def client_b(world) -> Client:
    client = Client()
    sign_in(client, world.reviewer_b)
    return client


@pytest.fixture
def report_a(world) -> Report:
    return delivered_report("authority-a", title="Intrusion tooling for A")


@pytest.fixture
def report_b(world) -> Report:
    return delivered_report("authority-b", title="Intrusion tooling for B")


def pending_report_a(world) -> Report:
    incident = make_incident(severity="SEV-1", title="Not yet delivered")
    report = Report.objects.get(incident=incident, stage_name="early_notice", destination__name="authority-a")
    assert report.status == ReportStatus.PENDING
    return report
