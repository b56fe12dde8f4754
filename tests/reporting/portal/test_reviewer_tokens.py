"""Reviewer API tokens: issued through the audited service, the command and the admin; shown once; refused
when revoked, expired, or their reviewer is inactive; never confused with detector tokens."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from incidents.models import AuditEvent
from reporting.portal.models import ReviewerToken
from reporting.portal.services.reviewers import reviewer_set_active
from reporting.portal.services.tokens import (
    TOKEN_PREFIX,
    reviewer_token_authenticate,
    reviewer_token_digest,
    reviewer_token_issue,
    reviewer_token_revoke,
)
from tests.conftest import login_verified
from tests.reporting.portal.feed_helpers import SYSTEM, bearer, issue_token

LIST = "/api/v1/reviewer/reports/"


def test_issue_stores_only_the_digest_and_audits(world):
    issued = issue_token(world.reviewer_a.reviewer, label="taxii client")
    token = ReviewerToken.objects.get(pk=issued.token.pk)
    assert issued.secret.startswith(TOKEN_PREFIX)
    assert token.token_hash == reviewer_token_digest(issued.secret)
    assert issued.secret not in {token.prefix, token.token_hash, token.label}
    assert token.scopes == ["reports:read"]
    event = AuditEvent.objects.get(action="reviewer_token_issued")
    assert event.changes["reviewer"] == "reviewer_a" and issued.secret not in str(event.changes)


@pytest.mark.parametrize("kwargs, field", [
    ({"scopes": ["incidents:submit"]}, "scopes"),
    ({"scopes": []}, "scopes"),
    ({"expires_at": "past"}, "expires_at"),
    ({"expires_at": "far"}, "expires_at"),
    ({"expires_at": "naive"}, "expires_at"),
    ({"label": "x" * 101}, "label"),
    ({"label": "a\x00b"}, "label"),
])
def test_issue_refuses_bad_input_and_stores_nothing(world, kwargs, field):
    now = timezone.now()
    expires = {"past": now - timedelta(seconds=1), "far": now + timedelta(days=400),
               "naive": (now + timedelta(days=1)).replace(tzinfo=None)}
    kwargs = {**kwargs, "expires_at": expires.get(kwargs.get("expires_at"), now + timedelta(days=1))}
    with pytest.raises(ValidationError) as caught:
        reviewer_token_issue(actor=SYSTEM, reviewer=world.reviewer_a.reviewer, **kwargs)
    assert field in caught.value.message_dict
    assert not ReviewerToken.objects.exists()


def test_issue_refuses_an_inactive_reviewer(world):
    reviewer_set_active(actor=SYSTEM, reviewer=world.reviewer_a.reviewer, is_active=False, reason="left")
    with pytest.raises(ValidationError):
        issue_token(world.reviewer_a.reviewer)
    assert not ReviewerToken.objects.exists()


def test_token_works_then_revoked_expired_or_inactive_reviewer_is_401(world):
    issued = issue_token(world.reviewer_a.reviewer)
    assert bearer(issued.secret).get(LIST).status_code == 200
    assert ReviewerToken.objects.get(pk=issued.token.pk).last_used_at is not None

    reviewer_token_revoke(actor=SYSTEM, token=issued.token, reason="rotated")
    response = bearer(issued.secret).get(LIST)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "urn:mir:problem:invalid-token"
    assert AuditEvent.objects.filter(action="reviewer_token_revoked").count() == 1

    expiring = issue_token(world.reviewer_a.reviewer)
    ReviewerToken.objects.filter(pk=expiring.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(expiring.secret).get(LIST).status_code == 401

    fresh = issue_token(world.reviewer_a.reviewer)
    reviewer_set_active(actor=SYSTEM, reviewer=world.reviewer_a.reviewer, is_active=False, reason="left")
    assert bearer(fresh.secret).get(LIST).status_code == 401
    assert reviewer_token_authenticate(secret=fresh.secret) is None


def test_inactive_user_account_refuses_the_token(world):
    issued = issue_token(world.reviewer_a.reviewer)
    user = world.reviewer_a.reviewer.user
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert bearer(issued.secret).get(LIST).status_code == 401


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer a b", "Token abc", "Bearer mirrv_not-a-real-token", "Bearer " + "mirrv_" + "x" * 300,
    "Basic !!!notbase64", "Basic " + "bWlycnZfeA==",  # "mirrv_x" without a colon: no password
])
def test_malformed_or_unknown_credentials_are_401_problems(world, header):
    client = bearer(None)
    response = client.get(LIST, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_no_credentials_is_401_with_a_challenge(world):
    response = bearer(None).get(LIST)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_detector_and_reviewer_tokens_do_not_cross(world, detector_a):
    _, detector_secret = detector_a
    assert bearer(detector_secret).get(LIST).status_code == 401
    issued = issue_token(world.reviewer_a.reviewer)
    response = bearer(issued.secret).get("/api/v1/incidents/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 401
    response = bearer(issued.secret).post("/api/v1/incidents/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401


def test_command_issues_once_and_prints_the_secret(world):
    out = StringIO()
    call_command("reviewer_token_issue", "--username", "reviewer_a", "--expires-in", "30d", "--label", "feed",
                 stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    token = ReviewerToken.objects.get()
    assert token.token_hash == reviewer_token_digest(secret)
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert bearer(secret).get(LIST).status_code == 200


@pytest.mark.parametrize("args, message", [
    (["--username", "nobody"], "no reviewer"),
    (["--username", "reviewer_a", "--expires-in", "soon"], "--expires-in"),
    (["--username", "reviewer_a", "--expires-in", "0"], "more than zero"),
    (["--username", "reviewer_a", "--expires-in", "400d"], "expires_at"),
])
def test_command_refuses_bad_arguments(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("reviewer_token_issue", *args, stdout=StringIO())
    assert not ReviewerToken.objects.exists()


def test_admin_issues_shows_once_and_revokes(world, staff_user):
    client = Client()
    login_verified(client, staff_user)
    response = client.post("/admin/portal/reviewertoken/add/", {
        "reviewer": world.reviewer_a.reviewer.pk, "label": "authority tools", "expires_in_days": "90",
    })
    assert response.status_code == 200, response.content[:300]
    token = ReviewerToken.objects.get()
    body = response.content.decode()
    secret = body.split('id="issued-token" type="text" readonly value="')[1].split('"')[0]
    assert token.token_hash == reviewer_token_digest(secret)
    assert "no-store" in response["Cache-Control"]
    assert secret not in client.get(f"/admin/portal/reviewertoken/{token.pk}/change/").content.decode()

    response = client.post("/admin/portal/reviewertoken/", {
        "action": "revoke_reviewer_tokens", "_selected_action": [token.pk], "apply": "1", "reason": "rotation",
    })
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get(LIST).status_code == 401


def test_admin_refuses_bad_expiry(world, staff_user):
    client = Client()
    login_verified(client, staff_user)
    response = client.post("/admin/portal/reviewertoken/add/", {
        "reviewer": world.reviewer_a.reviewer.pk, "expires_in_days": "0",
    })
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not ReviewerToken.objects.exists()
