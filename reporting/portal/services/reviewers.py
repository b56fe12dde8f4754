"""Reviewer accounts: creation with a TOTP device, activation, and the sign-in outcomes that drive lockout.

The account is a plain user that is never staff; the second factor is a confirmed django-otp TOTPDevice.
Its secret leaves this module once, in the value reviewer_create returns.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.portal.models import Authority, Reviewer

DEVICE_NAME = "portal"


@dataclass(frozen=True)
class ReviewerIssued:
    reviewer: Reviewer
    device: TOTPDevice
    # Shown once (command output or a no-store admin page), never stored in clear anywhere we show again.
    otpauth_uri: str
    secret_base32: str


def _check_username(username: str) -> str:
    username = (username or "").strip()
    field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
    if not username:
        raise ValidationError({"username": ["must not be empty"]})
    try:
        field.run_validators(username)
    except ValidationError as exc:
        raise ValidationError({"username": exc.messages}) from None
    if len(username) > field.max_length:
        raise ValidationError({"username": [f"at most {field.max_length} characters"]})
    return username


def reviewer_create(
    *, actor: Actor, username: str, email: str, authority: Authority, password: str
) -> ReviewerIssued:
    username = _check_username(username)
    email = (email or "").strip()
    try:
        EmailValidator()(email)
    except ValidationError:
        raise ValidationError({"email": ["a valid e-mail address"]}) from None
    user_model = get_user_model()
    try:
        validate_password(password, user=user_model(username=username, email=email))
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    with transaction.atomic():
        if user_model.objects.filter(username__iexact=username).exists():
            raise ValidationError({"username": ["this username is taken"]})
        # Never staff, never superuser: a reviewer cannot reach the admin even if a check there were missed.
        user = user_model.objects.create_user(username=username, email=email, password=password,
                                              is_staff=False, is_superuser=False)
        reviewer = Reviewer.objects.create(user=user, authority=authority)
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=True)
        audit_record(actor=actor, action="reviewer_created", obj=reviewer,
                     changes={"username": username, "email": email, "authority": authority.name,
                              "second_factor": "totp"})
    return ReviewerIssued(reviewer=reviewer, device=device, otpauth_uri=device.config_url,
                          secret_base32=base64.b32encode(device.bin_key).decode("ascii"))


def reviewer_set_active(*, actor: Actor, reviewer: Reviewer, is_active: bool, reason: str = "") -> Reviewer:
    with transaction.atomic():
        row = Reviewer.objects.select_for_update().get(pk=reviewer.pk)
        if row.is_active == is_active:
            return row
        row.is_active = is_active
        row.save(update_fields=["is_active"])
        audit_record(actor=actor, action="reviewer_activated" if is_active else "reviewer_deactivated", obj=row,
                     changes={"is_active": [not is_active, is_active]}, reason=reason)
    return row


def reviewer_unlock(*, actor: Actor, reviewer: Reviewer, reason: str = "") -> Reviewer:
    """Lift a lockout before it runs out (a staff decision, e.g. after confirming who asked)."""
    with transaction.atomic():
        row = Reviewer.objects.select_for_update().get(pk=reviewer.pk)
        if row.locked_until is None and row.failed_login_count == 0:
            return row
        changes = {"failed_login_count": [row.failed_login_count, 0],
                   "locked_until": [row.locked_until.isoformat() if row.locked_until else None, None]}
        row.failed_login_count, row.locked_until = 0, None
        row.save(update_fields=["failed_login_count", "locked_until"])
        audit_record(actor=actor, action="reviewer_unlocked", obj=row, changes=changes, reason=reason)
    return row


def reviewer_is_locked(reviewer: Reviewer) -> bool:
    return reviewer.locked_until is not None and reviewer.locked_until > timezone.now()


def reviewer_login_failed(*, reviewer: Reviewer, step: str, ip: str | None) -> Reviewer:
    """Count one failure (``step`` is "password" or "totp"); the one that reaches the limit locks the account.

    An expired lockout starts the count again. The row is locked while counting, so concurrent
    failures are all counted.
    """
    actor = Actor.system("portal-login")
    now = timezone.now()
    with transaction.atomic():
        row = Reviewer.objects.select_for_update().get(pk=reviewer.pk)
        if row.locked_until is not None and row.locked_until <= now:
            row.failed_login_count, row.locked_until = 0, None
        row.failed_login_count += 1
        row.save(update_fields=["failed_login_count", "locked_until"])
        audit_record(actor=actor, action="reviewer_login_failed", obj=row,
                     changes={"step": step, "ip": ip, "failed_login_count": row.failed_login_count})
        if row.failed_login_count >= settings.MIR_PORTAL_LOCKOUT_FAILURES and row.locked_until is None:
            row.locked_until = now + timedelta(seconds=settings.MIR_PORTAL_LOCKOUT_SECONDS)
            row.save(update_fields=["locked_until"])
            audit_record(actor=actor, action="reviewer_locked", obj=row,
                         changes={"locked_until": row.locked_until.isoformat(), "ip": ip,
                                  "failed_login_count": row.failed_login_count})
    return row


def reviewer_login_succeeded(*, reviewer: Reviewer, ip: str | None) -> Reviewer:
    with transaction.atomic():
        row = Reviewer.objects.select_for_update().get(pk=reviewer.pk)
        row.failed_login_count, row.locked_until, row.last_login_at = 0, None, timezone.now()
        row.save(update_fields=["failed_login_count", "locked_until", "last_login_at"])
        audit_record(actor=Actor.for_user(row.user), action="reviewer_logged_in", obj=row, changes={"ip": ip})
    return row


def reviewer_logged_out(*, reviewer: Reviewer, ip: str | None) -> None:
    with transaction.atomic():
        audit_record(actor=Actor.for_user(reviewer.user), action="reviewer_logged_out", obj=reviewer,
                     changes={"ip": ip})
