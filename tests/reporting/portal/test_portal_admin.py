"""Authorities and reviewers from the command line and the admin; the access log for staff."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from incidents.models import AuditEvent
from reporting.models import Destination
from reporting.portal.models import Authority, Reviewer, ReviewerAccess
from reporting.portal.services.authorities import authority_get_or_create
from tests.reporting.portal.conftest import PASSWORD, SYSTEM, sign_in, totp_now  # noqa: F401


def test_destination_create_makes_the_authority_once_by_name(db):
    out = io.StringIO()
    for name in ("hook-1", "hook-2"):
        call_command("destination_create", name, "--authority", "National CSIRT", "--transport", "webhook",
                     "--address", "https://csirt.example/hook", "--generate-secret", stdout=out)
    [authority] = Authority.objects.all()
    assert authority.name == "National CSIRT" and authority.slug == "national-csirt"
    assert set(Destination.objects.values_list("authority__name", flat=True)) == {"National CSIRT"}
    assert AuditEvent.objects.filter(action="authority_created").count() == 1
    assert "for National CSIRT via webhook" in out.getvalue()


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "a\x00b"])
def test_bad_authority_names_are_refused_and_nothing_is_stored(db, name):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        authority_get_or_create(actor=SYSTEM, name=name)
    assert not Authority.objects.exists()


def test_same_slug_from_different_names_stays_unique(db):
    first = authority_get_or_create(actor=SYSTEM, name="CSIRT (EU)")
    second = authority_get_or_create(actor=SYSTEM, name="CSIRT EU")
    assert first.slug == "csirt-eu" and second.slug == "csirt-eu-2"


def test_reviewer_create_prints_the_totp_secret_once_and_makes_a_non_staff_account(world, tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASSWORD + "\n")
    out = io.StringIO()
    call_command("reviewer_create", "--username", "carol", "--authority", "Authority A", "--email",
                 "carol@authority-a.example", "--password-file", str(secret_file), stdout=out)
    text = out.getvalue()
    assert re.search(r"otpauth://totp/[^\s]*carol[^\s]*secret=[A-Z2-7]+", text)
    assert re.search(r"^secret: [A-Z2-7]{32}$", text, re.MULTILINE)
    carol = Reviewer.objects.select_related("user", "authority").get(user__username="carol")
    assert carol.authority.name == "Authority A" and not carol.user.is_staff and not carol.user.is_superuser
    assert carol.user.check_password(PASSWORD)
    event = AuditEvent.objects.get(action="reviewer_created", object_id=str(carol.public_id))
    assert event.actor_label == "system:reviewer_create command"
    assert PASSWORD not in str(event.changes)


def test_reviewer_create_by_authority_slug(world, tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASSWORD)
    call_command("reviewer_create", "--username", "dave", "--authority", "authority-b", "--email",
                 "dave@authority-b.example", "--password-file", str(secret_file), stdout=io.StringIO())
    assert Reviewer.objects.get(user__username="dave").authority.name == "Authority B"


@pytest.mark.parametrize(("args", "password", "message"), [
    (["--authority", "No Such Authority"], PASSWORD, "no authority named"),
    (["--username", "reviewer_a"], PASSWORD, "username: this username is taken"),
    (["--username", "REVIEWER_A"], PASSWORD, "username: this username is taken"),
    (["--username", "bad name!"], PASSWORD, "username:"),
    (["--email", "not-an-email"], PASSWORD, "email:"),
    ([], "short", "password:"),
    ([], "password1234", "password:"),
    ([], "", "the password file is empty"),
])
def test_reviewer_create_refuses_bad_input_and_stores_nothing(world, tmp_path, args, password, message):
    secret_file = tmp_path / "pw"
    secret_file.write_text(password)
    options = {"--username": "erin", "--authority": "Authority A", "--email": "erin@authority-a.example"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag] = value
    argv = [item for pair in options.items() for item in pair] + ["--password-file", str(secret_file)]
    users, reviewers = get_user_model().objects.count(), Reviewer.objects.count()
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("reviewer_create", *argv, stdout=io.StringIO())
    assert get_user_model().objects.count() == users and Reviewer.objects.count() == reviewers


def test_reviewer_create_refuses_a_missing_password_file(world, tmp_path):
    with pytest.raises(CommandError, match="cannot read the password file"):
        call_command("reviewer_create", "--username", "erin", "--authority", "Authority A", "--email",
                     "erin@authority-a.example", "--password-file", str(tmp_path / "absent"), stdout=io.StringIO())


def test_a_reviewer_made_in_the_admin_gets_the_secret_once_and_can_sign_in(world, staff_client):
    authority = Authority.objects.get(name="Authority B")
    response = staff_client.post(reverse("admin:portal_reviewer_add"), {
        "username": "frank", "email": "frank@authority-b.example", "authority": authority.pk,
        "password1": PASSWORD, "password2": PASSWORD,
    })
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "otpauth://totp/" in body and "only time" in body
    frank = Reviewer.objects.get(user__username="frank")
    assert not frank.user.is_staff
    # The secret on the page is the device's: the reviewer can sign in with it.
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from reporting.portal.services.reviewers import ReviewerIssued

    device = TOTPDevice.objects.get(user=frank.user)
    issued = ReviewerIssued(reviewer=frank, device=device, otpauth_uri="", secret_base32="")
    sign_in(Client(), issued)
    # The change page never shows it again.
    change = staff_client.get(reverse("admin:portal_reviewer_change", args=[frank.pk])).content.decode()
    assert "otpauth://" not in change


@pytest.mark.parametrize(("overrides", "field"), [
    ({"password2": "a different passphrase 43"}, "password2"),
    ({"password1": "short", "password2": "short"}, "password"),
    ({"username": "reviewer_a"}, "username"),
    ({"email": "nope"}, "email"),
    ({"authority": ""}, "authority"),
])
def test_the_admin_refuses_bad_reviewers_and_stores_nothing(world, staff_client, overrides, field):
    data = {"username": "grace", "email": "grace@authority-a.example",
            "authority": Authority.objects.get(name="Authority A").pk, "password1": PASSWORD, "password2": PASSWORD,
            **overrides}
    count = Reviewer.objects.count()
    response = staff_client.post(reverse("admin:portal_reviewer_add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Reviewer.objects.count() == count
    assert not get_user_model().objects.filter(username="grace").exists()


def test_deactivating_a_reviewer_in_the_admin_is_audited(world, staff_client):
    reviewer = world.reviewer_a.reviewer
    response = staff_client.post(reverse("admin:portal_reviewer_change", args=[reviewer.pk]),
                                 {"is_active": "", "change_reason": "left the authority"})
    assert response.status_code == 302
    reviewer.refresh_from_db()
    assert not reviewer.is_active
    assert AuditEvent.objects.get(action="reviewer_deactivated").reason == "left the authority"


def test_staff_see_the_access_log_read_only_with_filters(world, staff_client, client_a, report_a):
    client_a.get(reverse("portal:report-detail", args=[report_a.public_id]))
    response = staff_client.get(reverse("admin:portal_revieweraccess_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "reviewer_a" in body and "Authority A" in body and "Viewed a report" in body
    filtered = staff_client.get(reverse("admin:portal_revieweraccess_changelist"),
                                {"reviewer__authority__id__exact": Authority.objects.get(name="Authority B").pk})
    assert "reviewer_a" not in filtered.content.decode().split("result_list")[-1]
    access = ReviewerAccess.objects.first()
    assert staff_client.post(reverse("admin:portal_revieweraccess_delete", args=[access.pk])).status_code == 403
    assert staff_client.get(reverse("admin:portal_revieweraccess_add")).status_code == 403


def test_authorities_in_the_admin_go_through_the_service(world, staff_client):
    response = staff_client.post(reverse("admin:portal_authority_add"), {"name": "Data Protection Board"})
    assert response.status_code == 302
    board = Authority.objects.get(name="Data Protection Board")
    assert board.slug == "data-protection-board"
    response = staff_client.post(reverse("admin:portal_authority_change", args=[board.pk]), {"name": "Authority A"})
    assert response.status_code == 200 and "already exists" in response.content.decode()
    staff_client.post(reverse("admin:portal_authority_change", args=[board.pk]), {"name": "EDPB"})
    board.refresh_from_db()
    assert board.name == "EDPB" and board.slug == "data-protection-board"
    assert AuditEvent.objects.filter(action__in=["authority_created", "authority_renamed"],
                                     object_id=str(board.public_id)).count() == 2


def test_the_destination_admin_picks_an_authority(world, staff_client):
    destination = world.destination_a
    other = Authority.objects.get(name="Authority B")
    response = staff_client.get(reverse("admin:reporting_destination_change", args=[destination.pk]))
    assert response.status_code == 200 and "Authority B" in response.content.decode()
    data = {"authority": other.pk, "address": destination.address, "username": "", "max_disclosure": "digests",
            "tlp": destination.tlp, "is_active": "on", "change_reason": "moved"}
    response = staff_client.post(reverse("admin:reporting_destination_change", args=[destination.pk]), data)
    assert response.status_code == 302, response.content[:3000]
    destination.refresh_from_db()
    assert destination.authority == other
    event = AuditEvent.objects.filter(action="destination_updated").latest("id")
    assert event.changes["authority"] == ["Authority A", "Authority B"]
