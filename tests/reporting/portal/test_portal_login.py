"""Signing in to the reviewers' portal: password then TOTP, lockout, and who is refused."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents.models import AuditEvent
from reporting.portal.models import Reviewer
from reporting.portal.signin import CODE_REFUSAL, GENERIC_REFUSAL
from tests.conftest import login_verified
from tests.reporting.portal.conftest import PASSWORD, sign_in, totp_now

LOGIN, CODE, LIST = reverse("portal:login"), reverse("portal:login-code"), reverse("portal:report-list")


def password_step(client: Client, username: str, password: str = PASSWORD):
    return client.post(LOGIN, {"username": username, "password": password})


def test_password_then_code_signs_in_and_is_audited(world):
    client = Client()
    response = password_step(client, "reviewer_a")
    assert response.status_code == 302 and response.url == CODE
    # Not signed in yet: the password alone opens nothing.
    assert client.get(LIST).status_code == 302
    response = client.post(CODE, {"token": totp_now(world.reviewer_a)})
    assert response.status_code == 302 and response.url == LIST
    assert client.get(LIST).status_code == 200
    assert AuditEvent.objects.filter(action="reviewer_logged_in", actor_label="user:reviewer_a").count() == 1


def test_anonymous_is_sent_to_sign_in_with_next(world):
    response = Client().get(LIST + "?category=CYBER")
    assert response.status_code == 302 and response.url.startswith(LOGIN + "?next=")


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(world):
    client = Client()
    assert client.get(CODE).url == LOGIN
    assert client.post(CODE, {"token": "123456"}).url == LOGIN


@pytest.mark.parametrize("username", ["reviewer_a", "nobody-at-all", "stella"])
def test_every_password_refusal_reads_the_same(world, staff_user, username):
    response = password_step(Client(), username, "wrong password entirely")
    assert response.status_code == 400
    assert GENERIC_REFUSAL in response.content.decode()


def test_a_wrong_password_counts_and_is_audited(world):
    password_step(Client(), "reviewer_a", "wrong password entirely")
    reviewer = Reviewer.objects.get(user__username="reviewer_a")
    assert reviewer.failed_login_count == 1 and reviewer.locked_until is None
    event = AuditEvent.objects.get(action="reviewer_login_failed")
    assert event.changes["step"] == "password" and event.changes["ip"] == "127.0.0.1"


def test_unknown_usernames_count_nothing_per_account(world):
    password_step(Client(), "nobody-at-all", "whatever it is")
    assert not AuditEvent.objects.filter(action="reviewer_login_failed").exists()
    assert set(Reviewer.objects.values_list("failed_login_count", flat=True)) == {0}


def test_a_wrong_code_is_refused_and_counted(world):
    client = Client()
    password_step(client, "reviewer_a")
    wrong = f"{(int(totp_now(world.reviewer_a)) + 500_000) % 1_000_000:06d}"
    response = client.post(CODE, {"token": wrong})
    assert response.status_code == 400 and CODE_REFUSAL in response.content.decode()
    assert client.get(LIST).status_code == 302
    assert Reviewer.objects.get(user__username="reviewer_a").failed_login_count == 1
    assert AuditEvent.objects.get(action="reviewer_login_failed").changes["step"] == "totp"


@pytest.mark.parametrize("token", ["", "12345", "1234567", "abcdef", "12 34 56", "١٢٣٤٥٦"])
def test_a_malformed_code_is_a_message_and_not_a_guess(world, token):
    client = Client()
    password_step(client, "reviewer_a")
    response = client.post(CODE, {"token": token})
    assert response.status_code == 400
    assert Reviewer.objects.get(user__username="reviewer_a").failed_login_count == 0


def test_a_code_works_once(world):
    client = Client()
    sign_in(client, world.reviewer_a)
    code = totp_now(world.reviewer_a)
    client.post(reverse("portal:logout"))
    other = Client()
    password_step(other, "reviewer_a")
    response = other.post(CODE, {"token": code})
    assert response.status_code == 400 and CODE_REFUSAL in response.content.decode()
    assert other.get(LIST).status_code == 302


def test_five_failures_lock_the_account_even_for_the_right_password(world, settings):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 5
    client = Client()
    for _ in range(5):
        assert password_step(client, "reviewer_a", "wrong password entirely").status_code == 400
    reviewer = Reviewer.objects.get(user__username="reviewer_a")
    assert reviewer.locked_until is not None and reviewer.locked_until > timezone.now()
    locked = AuditEvent.objects.get(action="reviewer_locked")
    assert locked.changes["failed_login_count"] == 5
    response = password_step(client, "reviewer_a")
    assert response.status_code == 400 and GENERIC_REFUSAL in response.content.decode()
    # The other authority's reviewer is not affected.
    assert password_step(Client(), "reviewer_b").status_code == 302


def test_code_failures_count_towards_the_lockout_and_end_the_code_step(world, settings):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 2
    client = Client()
    password_step(client, "reviewer_a")
    wrong = f"{(int(totp_now(world.reviewer_a)) + 500_000) % 1_000_000:06d}"
    client.post(CODE, {"token": wrong})
    response = client.post(CODE, {"token": wrong})
    assert response.status_code == 400 and GENERIC_REFUSAL in response.content.decode()
    # The right code is no use now: the code step is over and the account is locked.
    assert client.post(CODE, {"token": totp_now(world.reviewer_a)}).url == LOGIN
    assert Reviewer.objects.get(user__username="reviewer_a").locked_until is not None


def test_a_lockout_ends_by_itself(world, settings):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 1
    password_step(Client(), "reviewer_a", "wrong password entirely")
    Reviewer.objects.filter(user__username="reviewer_a").update(locked_until=timezone.now() - timedelta(seconds=1))
    sign_in(Client(), world.reviewer_a)
    reviewer = Reviewer.objects.get(user__username="reviewer_a")
    assert reviewer.failed_login_count == 0 and reviewer.locked_until is None


def test_after_a_lockout_ends_the_count_starts_again(world, settings):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 2
    client = Client()
    for _ in range(2):
        password_step(client, "reviewer_a", "wrong password entirely")
    Reviewer.objects.filter(user__username="reviewer_a").update(locked_until=timezone.now() - timedelta(seconds=1))
    password_step(client, "reviewer_a", "wrong password entirely")
    reviewer = Reviewer.objects.get(user__username="reviewer_a")
    assert reviewer.failed_login_count == 1 and reviewer.locked_until is None
    assert password_step(client, "reviewer_a").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_are_all_counted(world, settings):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 100
    import threading

    from django.db import connection as conn

    from reporting.portal.services.reviewers import reviewer_login_failed

    reviewer = Reviewer.objects.get(user__username="reviewer_a")

    def fail():
        try:
            reviewer_login_failed(reviewer=reviewer, step="password", ip="10.0.0.1")
        finally:
            conn.close()

    threads = [threading.Thread(target=fail) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reviewer.refresh_from_db()
    assert reviewer.failed_login_count == 6


def test_staff_can_unlock_a_reviewer_in_the_admin(world, settings, staff_user):
    settings.MIR_PORTAL_LOCKOUT_FAILURES = 1
    password_step(Client(), "reviewer_a", "wrong password entirely")
    reviewer = Reviewer.objects.get(user__username="reviewer_a")
    assert reviewer.locked_until is not None
    staff = login_verified(Client(), staff_user)
    response = staff.post(reverse("admin:portal_reviewer_changelist"),
                          {"action": "unlock_selected", "_selected_action": [reviewer.pk]})
    assert response.status_code == 302
    reviewer.refresh_from_db()
    assert reviewer.locked_until is None and reviewer.failed_login_count == 0
    assert AuditEvent.objects.get(action="reviewer_unlocked").actor_label == "user:stella"
    sign_in(Client(), world.reviewer_a)


def test_one_address_failing_across_many_names_is_refused(world, settings):
    settings.MIR_PORTAL_IP_MAX_FAILURES = 3
    client = Client()
    for name in ("x1", "x2", "x3"):
        password_step(client, name, "whatever it is")
    response = password_step(client, "reviewer_a")
    assert response.status_code == 400 and GENERIC_REFUSAL in response.content.decode()
    # Another address is not affected.
    other = Client(REMOTE_ADDR="10.0.0.7")
    assert other.post(LOGIN, {"username": "reviewer_a", "password": PASSWORD}).status_code == 302


@pytest.mark.parametrize("data", [{}, {"username": "reviewer_a"}, {"password": PASSWORD},
                                  {"username": "x" * 151, "password": PASSWORD},
                                  {"username": "reviewer_a\x00", "password": PASSWORD},
                                  {"username": "reviewer_a", "password": "p" * 1025}])
def test_malformed_sign_in_forms_are_refused(world, data):
    response = Client().post(LOGIN, data)
    assert response.status_code == 400


def test_an_inactive_reviewer_cannot_sign_in_and_an_open_session_ends(world):
    client = Client()
    sign_in(client, world.reviewer_a)
    Reviewer.objects.filter(user__username="reviewer_a").update(is_active=False)
    assert client.get(LIST).status_code == 302
    assert password_step(Client(), "reviewer_a").status_code == 400


def test_staff_are_not_reviewers(world, staff_user):
    # A staff member's admin session (second factor given) opens nothing in the portal ...
    staff = login_verified(Client(), staff_user)
    assert staff.get(LIST).status_code == 302
    # ... and staff credentials do not pass the portal's sign-in.
    response = password_step(Client(), "stella", "correct horse battery staple")
    assert response.status_code == 400 and GENERIC_REFUSAL in response.content.decode()


def test_reviewers_are_refused_by_the_admin(world):
    client = Client()
    sign_in(client, world.reviewer_a)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response.url
    # The admin's own sign-in form refuses the reviewer's credentials as well.
    response = Client().post(reverse("admin:login"), {"username": "reviewer_a", "password": PASSWORD,
                                                      "next": "/admin/"})
    assert response.status_code == 200 and "/admin/" not in response.get("Location", "")


def test_a_reviewer_made_staff_by_mistake_is_still_refused_by_the_admin(world):
    get_user_model().objects.filter(username="reviewer_a").update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(get_user_model().objects.get(username="reviewer_a"))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response.url
    # And the portal refuses a staff flag too.
    assert password_step(Client(), "reviewer_a").status_code == 400


def test_sign_out_ends_the_session_and_is_audited(client_a):
    assert client_a.get(reverse("portal:logout")).status_code == 405
    assert client_a.post(reverse("portal:logout")).url == LOGIN
    assert client_a.get(LIST).status_code == 302
    assert AuditEvent.objects.filter(action="reviewer_logged_out").count() == 1


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "/admin/", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_the_portal(world, next_url):
    client = Client()
    client.post(LOGIN, {"username": "reviewer_a", "password": PASSWORD, "next": next_url})
    response = client.post(CODE, {"token": totp_now(world.reviewer_a)})
    assert response.url == LIST


def test_sign_in_returns_to_the_page_asked_for(world):
    client = Client()
    client.post(LOGIN, {"username": "reviewer_a", "password": PASSWORD, "next": LIST + "?severity=SEV-1"})
    assert client.post(CODE, {"token": totp_now(world.reviewer_a)}).url == LIST + "?severity=SEV-1"


def test_portal_pages_are_never_cached(client_a):
    assert "no-store" in client_a.get(LIST)["Cache-Control"]
    assert "no-store" in Client().get(LOGIN)["Cache-Control"]
