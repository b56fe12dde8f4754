"""Staff admin logins need a second factor: enrolment, login with a code, replay, backup codes, dev code."""
from __future__ import annotations

import base64
import time
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from incidents.actors import Actor
from incidents.models import AuditEvent
from reporting.services.staff_otp import staff_otp_enrol
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"
SYSTEM = Actor.system("tests")


def code_for(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"


def login(client, code: str | None, username: str = "stella", password: str = PASSWORD):
    data = {"username": username, "password": password, "next": "/admin/"}
    if code is not None:
        data["otp_token"] = code
    return client.post(LOGIN, data)


def reaches_admin(client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def enrolled(staff_user):
    return staff_otp_enrol(actor=SYSTEM, user=staff_user)


def test_password_and_current_code_log_in_and_reach_the_admin(client, enrolled):
    response = login(client, code_for(enrolled.device))
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert reaches_admin(client)


def test_login_without_a_code_is_refused(client, enrolled):
    response = login(client, None)
    assert response.status_code == 200
    assert "Please enter your OTP token" in response.content.decode()
    assert not reaches_admin(client)


@pytest.mark.parametrize("code", ["000000", "12345", "not-a-code", "1" * 40])
def test_a_wrong_code_is_refused(client, enrolled, code):
    if code == code_for(enrolled.device):
        code = "999999" if code != "999999" else "000001"
    response = login(client, code)
    assert response.status_code == 200
    assert not reaches_admin(client)


def test_a_wrong_password_with_a_right_code_is_refused(client, enrolled):
    response = login(client, code_for(enrolled.device), password="wrong")
    assert response.status_code == 200
    assert not reaches_admin(client)


def test_a_code_cannot_be_replayed(client, enrolled):
    code = code_for(enrolled.device)
    assert login(client, code).status_code == 302
    client.logout()
    replay = login(client, code)
    assert replay.status_code == 200 and "Invalid token" in replay.content.decode()
    assert not reaches_admin(client)


def test_another_users_device_cannot_be_chosen(client, enrolled, staff_user):
    other = get_user_model().objects.create_user("otto", password=PASSWORD, is_staff=True)
    staff_otp_enrol(actor=SYSTEM, user=other)
    response = client.post(LOGIN, {"username": "otto", "password": PASSWORD, "otp_token": code_for(enrolled.device),
                                   "otp_device": enrolled.device.persistent_id})
    assert response.status_code == 200
    assert not reaches_admin(client)


@pytest.mark.parametrize("code", ["123456", None, "abcdefgh"])
def test_a_staff_user_without_a_device_is_told_how_to_enrol(client, staff_user, code):
    response = login(client, code)
    assert response.status_code == 200
    assert "python manage.py staff_otp_enrol stella" in response.content.decode()
    assert not reaches_admin(client)


def test_no_code_from_a_user_with_only_an_app_asks_for_the_code(client, staff_user):
    staff_otp_enrol(actor=SYSTEM, user=staff_user, backup_codes=0)
    response = login(client, None)
    assert response.status_code == 200 and "Please enter your OTP token" in response.content.decode()


def test_a_session_without_a_verified_device_cannot_reach_the_admin(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/admin/", follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0].startswith("/admin/login/")
    assert "staff_otp_enrol stella" in page
    assert client.get("/admin/reporting/report/").status_code == 302


def test_a_backup_code_works_once(client, enrolled):
    code = enrolled.backup_codes[0]
    assert login(client, code).status_code == 302
    assert reaches_admin(client)
    client.logout()
    assert login(client, code).status_code == 200
    assert not reaches_admin(client)
    assert StaticToken.objects.filter(device__user=enrolled.device.user).count() == len(enrolled.backup_codes) - 1


def test_enrolment_is_audited_without_the_secret(staff_user):
    enrolment = staff_otp_enrol(actor=SYSTEM, user=staff_user, backup_codes=3)
    event = AuditEvent.objects.get(action="staff_otp.enrolled")
    assert event.changes == {"user": "stella", "backup_codes": 3, "devices_replaced": 0}
    assert enrolment.secret_base32 not in str(event.changes) and enrolment.device.key not in str(event.changes)
    assert enrolment.uri.startswith("otpauth://totp/") and f"secret={enrolment.secret_base32}" in enrolment.uri
    assert len(set(enrolment.backup_codes)) == 3


def test_enrolling_twice_needs_replace_and_replacing_kills_old_codes(client, staff_user, enrolled):
    with pytest.raises(ValidationError, match="already has a second factor"):
        staff_otp_enrol(actor=SYSTEM, user=staff_user)
    old_backup = enrolled.backup_codes[0]
    staff_otp_enrol(actor=SYSTEM, user=staff_user, replace=True)
    assert TOTPDevice.objects.filter(user=staff_user).count() == 1
    assert StaticDevice.objects.filter(user=staff_user).count() == 1
    assert login(client, old_backup).status_code == 200
    assert AuditEvent.objects.filter(action="staff_otp.enrolled").count() == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"secret_base32": "not base32!"}, "not a base32"),
    ({"secret_base32": "JBSWY3DP"}, "at least 128 bits"),
    ({"backup_codes": -1}, "between 0 and 20"),
    ({"backup_codes": 21}, "between 0 and 20"),
])
def test_bad_enrolment_input_is_refused_and_stores_nothing(staff_user, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        staff_otp_enrol(actor=SYSTEM, user=staff_user, **kwargs)
    assert not TOTPDevice.objects.exists() and not AuditEvent.objects.filter(action="staff_otp.enrolled").exists()


def test_a_non_staff_user_cannot_be_enrolled(db):
    user = get_user_model().objects.create_user("nina", password=PASSWORD)
    with pytest.raises(ValidationError, match="not an active staff user"):
        staff_otp_enrol(actor=SYSTEM, user=user)


def test_a_kept_secret_gives_the_same_codes(staff_user):
    secret = base64.b32encode(b"k" * 20).decode()
    enrolment = staff_otp_enrol(actor=SYSTEM, user=staff_user, secret_base32=secret.lower(), backup_codes=0)
    assert enrolment.secret_base32 == secret and enrolment.backup_codes == []
    assert not StaticDevice.objects.filter(user=staff_user).exists()


def test_enrol_command_prints_uri_secret_and_codes_once(staff_user):
    out = StringIO()
    call_command("staff_otp_enrol", "stella", "--backup-codes", "2", stdout=out)
    text = out.getvalue()
    device = TOTPDevice.objects.get(user=staff_user)
    assert "otpauth://totp/" in text and base64.b32encode(device.bin_key).decode().rstrip("=") in text
    codes = StaticToken.objects.filter(device__user=staff_user).values_list("token", flat=True)
    assert all(code in text for code in codes) and len(codes) == 2
    with pytest.raises(CommandError, match="already has a second factor"):
        call_command("staff_otp_enrol", "stella", stdout=StringIO())
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("staff_otp_enrol", "ghost", stdout=StringIO())


def test_code_command_works_only_in_development(settings, enrolled):
    settings.MIR_ENV = "test"
    with pytest.raises(CommandError, match="only works with MIR_ENV=development"):
        call_command("staff_otp_code", "stella", stdout=StringIO(), stderr=StringIO())
    settings.MIR_ENV = "development"
    out = StringIO()
    call_command("staff_otp_code", "stella", stdout=out, stderr=StringIO())
    assert out.getvalue().strip() in {code_for(enrolled.device, offset_steps=k) for k in (-1, 0)}


def test_code_command_names_a_missing_device(settings, staff_user):
    settings.MIR_ENV = "development"
    with pytest.raises(CommandError, match="staff_otp_enrol stella"):
        call_command("staff_otp_code", "stella", stdout=StringIO(), stderr=StringIO())


def test_otp_devices_are_not_editable_in_the_admin(client, staff_user):
    login_verified(client, staff_user)
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert client.get("/admin/otp_static/staticdevice/").status_code == 404


def test_digits_from_a_user_with_only_backup_codes_are_refused(client, staff_user):
    enrolment = staff_otp_enrol(actor=SYSTEM, user=staff_user)
    TOTPDevice.objects.filter(pk=enrolment.device.pk).delete()
    response = login(client, "123456")
    assert response.status_code == 200 and "Invalid token" in response.content.decode()
    assert login(client, enrolment.backup_codes[0]).status_code == 302
